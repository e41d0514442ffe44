#!/usr/bin/env bash
# Builds ingot's container image without any container registry (`make image`):
#   1. a Debian base image: mmdebstrap makes a minimal rootfs from Debian's mirror, `docker import` loads it;
#   2. wheels of the runtime dependencies, built on this host (a container here cannot fetch from PyPI);
#   3. `docker build` of deploy/image/Containerfile on a context of those wheels, ingot's wheel and the
#      default models from $INGOT_HOME/models.
# Steps 1 and 2 are cached (keyed by their inputs) under $DEPLOY_CACHE; Docker caches the layers of step 3.
#
# Environment: IMAGE (default ingot:VERSION, or ingot:VERSION-cuda), VARIANT (cpu | cuda), INGOT_HOME,
# DEPLOY_CACHE (default $INGOT_HOME/deploy), PYTHON (a Python 3.11 with pip, setuptools and wheel: the
# image's Python is Debian bookworm's 3.11, so the wheels must match it).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VARIANT=${VARIANT:-cpu}
INGOT_HOME=${INGOT_HOME:-$HOME/.ingot}
DEPLOY_CACHE=${DEPLOY_CACHE:-$INGOT_HOME/deploy}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# libgomp1: onnxruntime-genai's OpenMP runtime. Nothing else: no compilers, no curl.
BASE_PACKAGES=python3,python3-venv,ca-certificates,libgomp1
# The models `make setup` builds; others in the cache are the operator's to download at run time.
BAKED_MODELS=(HuggingFaceTB/SmolLM2-135M-Instruct-generic-cpu-1 sentence-transformers/all-MiniLM-L6-v2-generic-cpu-1)
# pip evaluates markers against the Python it runs on (the host's), not the image's bookworm 3.11.2: redis
# needs async-timeout below 3.11.3. A missing one fails the image build loudly (pip --no-index).
IMAGE_PYTHON_EXTRAS=("async-timeout>=4.0.3")
CUDA_PACKAGES=("onnxruntime-genai-cuda==0.18.0" "onnxruntime-gpu[cuda,cudnn]>=1.31")
export DOCKER_BUILDKIT=0  # Debian's docker.io has no buildx; the classic builder does all this needs

VERSION=$("$PYTHON" -c 'import tomllib; print(tomllib.load(open("'"$ROOT"'/pyproject.toml", "rb"))["project"]["version"])')
if [ "$VARIANT" = cpu ]; then IMAGE=${IMAGE:-ingot:$VERSION}; else IMAGE=${IMAGE:-ingot:$VERSION-$VARIANT}; fi
[ "$VARIANT" = cpu ] || [ "$VARIANT" = cuda ] || { echo "VARIANT must be cpu or cuda" >&2; exit 2; }
mkdir -p "$DEPLOY_CACHE"
say() { echo "image: $*" >&2; }

# 1. The base image, tagged by a hash of what went into it.
base_key=$(echo "$SUITE $BASE_PACKAGES $MIRROR" | sha256sum | cut -c1-12)
BASE=ingot-base:$SUITE-$base_key
if ! docker image inspect "$BASE" >/dev/null 2>&1; then
    say "building the base $BASE with mmdebstrap"
    rootfs="$DEPLOY_CACHE/base-$base_key.tar"
    mmdebstrap --quiet --variant=minbase --include="$BASE_PACKAGES" \
        --customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*' \
        "$SUITE" "$rootfs.partial" "deb $MIRROR $SUITE main" "deb $SECURITY_MIRROR $SUITE-security main"
    docker import --change 'CMD ["/usr/bin/python3"]' "$rootfs.partial" "$BASE" >/dev/null
    rm -f "$rootfs.partial"
fi

# 2. Wheels of the runtime dependencies (not the build extra: no torch), keyed by that list.
requirements=$("$PYTHON" - "$ROOT/pyproject.toml" <<'PY'
import sys, tomllib
print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))
PY
)
deps_key=$( (echo "$requirements"; echo "$VARIANT ${CUDA_PACKAGES[*]} ${IMAGE_PYTHON_EXTRAS[*]}") | sha256sum | cut -c1-12)
deps="$DEPLOY_CACHE/wheels-$VARIANT-$deps_key"
if [ ! -f "$deps/requirements.txt" ]; then
    say "building the dependency wheels into $deps"
    rm -rf "$deps.partial" && mkdir -p "$deps.partial"
    echo "$requirements" > "$deps.partial/requirements.txt"
    "$PYTHON" -m pip wheel --quiet --wheel-dir "$deps.partial" --requirement "$deps.partial/requirements.txt"
    "$PYTHON" -m pip wheel --quiet --wheel-dir "$deps.partial" "${IMAGE_PYTHON_EXTRAS[@]}"
    if [ "$VARIANT" = cuda ]; then
        printf '%s\n' "${CUDA_PACKAGES[@]}" > "$deps.partial/requirements-cuda.txt"
        "$PYTHON" -m pip wheel --quiet --wheel-dir "$deps.partial" --requirement "$deps.partial/requirements-cuda.txt"
    fi
    rm -rf "$deps" && mv "$deps.partial" "$deps"
    # Only the current set is kept: the cache does not grow with every dependency change.
    find "$DEPLOY_CACHE" -maxdepth 1 -name "wheels-$VARIANT-*" ! -name "wheels-$VARIANT-$deps_key" -exec rm -rf {} +
fi

# 3. The build context: hard links where the file system allows, so nothing large is copied twice.
context="$DEPLOY_CACHE/context-$VARIANT"
rm -rf "$context" && mkdir -p "$context/app" "$context/models"
cp -al "$deps" "$context/deps" 2>/dev/null || cp -a "$deps" "$context/deps"
# ingot's own wheel, from a copy of the sources (with the generated protobuf code), so that a stale build/
# folder in the checkout can never leak removed modules into the image.
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
(cd "$ROOT" && cp -r pyproject.toml README.md ingot edge services "$src/")
find "$src" -name __pycache__ -prune -exec rm -rf {} +
[ -f "$src/ingot/tokenizer/v1/tokenizer_service_pb2.py" ] || { echo "run make protos first" >&2; exit 1; }
"$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir "$context/app" "$src"
for model in "${BAKED_MODELS[@]}"; do
    [ -f "$INGOT_HOME/models/$model/inference_model.json" ] || { echo "$model is not built: run make setup" >&2; exit 1; }
    mkdir -p "$context/models/$(dirname "$model")"
    cp -al "$INGOT_HOME/models/$model" "$context/models/$model" 2>/dev/null || cp -a "$INGOT_HOME/models/$model" "$context/models/$model"
done

say "docker build $IMAGE (base $BASE, variant $VARIANT)"
docker build --quiet --force-rm --network host --build-arg "BASE=$BASE" --build-arg "VARIANT=$VARIANT" \
    --tag "$IMAGE" --file "$ROOT/deploy/image/Containerfile" "$context" >/dev/null
rm -rf "$context"
echo "$IMAGE"
