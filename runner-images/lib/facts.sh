# Shared by the built-in recipes (sourced by their build.sh; `image build tiny|debian` stages
# this file next to build.sh, a recipe directory under runner-images/ finds it in ../lib).

# The manifest's `facts` (src/image/facts.rs): the shells and tools the root $1 has on PATH,
# as a JSON object. Node.js runtimes: none in these images yet.
image_facts() {
    local root="$1" name dir shells=() tools=()
    on_path() {
        for dir in bin usr/bin usr/local/bin; do
            if [ -e "$root/$dir/$1" ] || [ -L "$root/$dir/$1" ]; then
                return 0
            fi
        done
        return 1
    }
    for name in sh bash; do
        if on_path "$name"; then shells+=("\"$name\""); fi
    done
    for name in tar gzip xz zstd unzip git curl wget python3 jq docker; do
        if on_path "$name"; then tools+=("\"$name\""); fi
    done
    local IFS=,
    printf '{"shells": [%s], "tools": [%s], "node": []}' "${shells[*]}" "${tools[*]}"
}
