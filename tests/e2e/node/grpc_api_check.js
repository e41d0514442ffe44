// A Node.js service calling ingot's public gRPC API the way a Node team would: stock @grpc/grpc-js and
// @grpc/proto-loader, and nothing from the repository but its .proto files.
//
//   node grpc_api_check.js '{"address": "127.0.0.1:5273", "key": "...", "chat_model": "...",
//                            "embed_model": "...", "tool_schema": {...}, "answer_schema": {...}}'
//
// Prints one JSON report of what the server answered; tests/e2e/test_grpc_api_node.py checks it (the
// arguments and the answer against their JSON Schemas among the rest).
'use strict';

const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const PROTOS = path.resolve(__dirname, '..', '..', '..', 'protos');
const config = JSON.parse(process.argv[2]);

const definition = protoLoader.loadSync('ingot/api/v1/ingot_service.proto', {
  includeDirs: [PROTOS], keepCase: true, longs: String, enums: String, defaults: true, oneofs: true,
});
const api = grpc.loadPackageDefinition(definition).ingot.api.v1;
const client = new api.IngotService(config.address, grpc.credentials.createInsecure());

// google.rpc.Status and ErrorInfo, as the status details of every error carry them.
const rpc = protobuf.Root.fromJSON({nested: {google: {nested: {rpc: {nested: {
  Any: {fields: {type_url: {type: 'string', id: 1}, value: {type: 'bytes', id: 2}}},
  Status: {fields: {code: {type: 'int32', id: 1}, message: {type: 'string', id: 2},
                    details: {rule: 'repeated', type: 'Any', id: 3}}},
  ErrorInfo: {fields: {reason: {type: 'string', id: 1}, domain: {type: 'string', id: 2},
                       metadata: {keyType: 'string', type: 'string', id: 3}}},
}}}}}});
const Status = rpc.lookupType('google.rpc.Status');
const ErrorInfo = rpc.lookupType('google.rpc.ErrorInfo');

function keyed() {
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${config.key}`);
  return metadata;
}

function failure(error) {
  const out = {code: grpc.status[error.code], message: error.details, reason: null, param: null};
  const [raw] = error.metadata ? error.metadata.get('grpc-status-details-bin') : [];
  if (raw) {
    for (const detail of Status.decode(raw).details) {
      if (detail.type_url.endsWith('/google.rpc.ErrorInfo')) {
        const info = ErrorInfo.decode(detail.value);
        out.reason = info.reason;
        out.param = info.metadata.param || null;
      }
    }
  }
  return out;
}

// Choice 0 of a Chat stream: its text, its calls assembled from their pieces, finish reason and usage.
function chat(request, metadata = keyed()) {
  return new Promise((resolve, reject) => {
    const answer = {role: null, text: '', calls: {}, finish_reason: null, usage: null, messages: 0};
    const call = client.Chat(request, metadata, {deadline: Date.now() + 120000});
    call.on('data', (response) => {
      answer.messages += 1;
      if (response.event === 'usage') {
        answer.usage = response.usage;
        return;
      }
      const delta = response.delta;
      if (delta.role !== 'ROLE_UNSPECIFIED') answer.role = delta.role;
      answer.text += delta.text;
      for (const piece of delta.tool_calls) {
        const entry = answer.calls[piece.index] || (answer.calls[piece.index] = {id: '', name: '', arguments: ''});
        entry.id += piece.id;
        entry.name += piece.name;
        entry.arguments += piece.arguments;
      }
      if (delta.finish_reason !== 'FINISH_REASON_UNSPECIFIED') answer.finish_reason = delta.finish_reason;
    });
    call.on('error', reject);
    call.on('end', () => resolve({...answer, calls: Object.values(answer.calls)}));
  });
}

function unary(method, request, metadata = keyed()) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata, {deadline: Date.now() + 120000},
                   (error, response) => (error ? reject(error) : resolve(response)));
  });
}

async function outcome(promise) {
  try {
    return {ok: await promise};
  } catch (error) {
    if (error.code === undefined) throw error;
    return {error: failure(error)};
  }
}

const user = (text) => [{role: 'ROLE_USER', content: text}];

async function main() {
  const report = {};
  report.chat = await outcome(chat({model: config.chat_model, messages: user('Say hello.'),
                                    sampling: {max_tokens: 12, temperature: 0}}));
  report.tool_call = await outcome(chat({
    model: config.chat_model, messages: user('What is the weather in Paris?'),
    tools: [{function: {name: 'get_weather', description: 'Get the weather in a city',
                        parameters_json: JSON.stringify(config.tool_schema), strict: true}}],
    tool_choice: {mode: 'MODE_REQUIRED'}, sampling: {max_tokens: 80, temperature: 0},
  }));
  report.json_schema = await outcome(chat({
    model: config.chat_model, messages: user('Order two apples.'),
    response_format: {type: 'TYPE_JSON_SCHEMA',
                      json_schema: {name: 'order', schema_json: JSON.stringify(config.answer_schema), strict: true}},
    sampling: {max_tokens: 60, temperature: 0},
  }));
  const embedded = await outcome(unary('Embed', {model: config.embed_model, inputs: ['a cat', 'a dog']}));
  report.embedding = embedded.ok
    ? {ok: {model: embedded.ok.model, vectors: embedded.ok.embeddings.map((e) => e.values.length),
            norms: embedded.ok.embeddings.map((e) => Math.hypot(...e.values)), usage: embedded.ok.usage}}
    : embedded;
  const listed = await outcome(unary('ListModels', {}));
  report.models = listed.ok ? {ok: listed.ok.models.map((m) => m.id)} : listed;
  report.no_key = await outcome(chat({model: config.chat_model, messages: user('hi')}, new grpc.Metadata()));
  report.unknown_model = await outcome(chat({model: 'no-such-model', messages: user('hi')}));
  process.stdout.write(JSON.stringify(report) + '\n');
  client.close();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
