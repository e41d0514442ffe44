"""OpenAI's Responses API over the chat pipeline, with stored conversations.

`schemas` validates a request, `items` turns its input items into chat messages, `events` turns the chat
stream into Responses events, `store` keeps responses (SQLite or Redis), `routes` answers the HTTP routes,
and `adapter` is the one module that reaches the rest of the edge.
"""
