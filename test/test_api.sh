#!/usr/bin/env bash
# The shared library's public surface, checked from the outside (TAP):
#   1. libmdp.so exports exactly the functions that include/ declares with
#      MDP_EXTERN: nothing internal leaks, nothing public is hidden;
#   2. <mdp.h> compiles as C++11 and as strict C99 with warnings as errors;
#   3. docs/api.md, generated from the headers, is up to date and has an
#      entry for every exported function.
# Needs MDP_BUILD_DIR and MDP_SOURCE_DIR (set by meson).
set -u
build=${MDP_BUILD_DIR:?} src=${MDP_SOURCE_DIR:?}
n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; }
check() { if [ "$1" -eq 0 ]; then ok "$2"; else not_ok "$2"; fi; }

so=$(ls "$build"/lib/libmdp.so.[0-9]* 2>/dev/null | head -n 1)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- 1. exported symbols = MDP_EXTERN declarations
# (ASan adds an __odr_asan.NAME indicator for each exported global: the
# sanitizer's, not ours.)
nm -D --defined-only "$so" | awk '$2 ~ /^[TDBRW]$/ {print $3}' |
  grep -v '^__odr_asan' | sort -u >"$tmp/exported"
cat "$src"/include/mdp/*.h |
  awk '/^MDP_EXTERN/ {decl = 1} decl {printf "%s ", $0} decl && /;/ {print ""; decl = 0}' |
  grep -oE 'mdp_[a-z0-9_]+ *[(\[]' | tr -d ' ([' | sort -u >"$tmp/declared"
extra=$(comm -23 "$tmp/exported" "$tmp/declared")
missing=$(comm -13 "$tmp/exported" "$tmp/declared")
[ -s "$tmp/exported" ] || extra="(nothing exported: $so)"
for s in $extra; do echo "# exported but not declared with MDP_EXTERN in include/: $s"; done
check "$([ -z "$extra" ]; echo $?)" "every exported symbol is declared in include/ ($(wc -l <"$tmp/exported") exported)"
for s in $missing; do echo "# declared with MDP_EXTERN but not exported: $s"; done
check "$([ -z "$missing" ]; echo $?)" "every MDP_EXTERN declaration is exported"
# A public-looking declaration without MDP_EXTERN would be hidden: unusable
# from libmdp.so.
bare=$(grep -hE '^(extern |const |unsigned )*[a-z_0-9]+[ *]+\**mdp_[a-z0-9_]+ *[(\[]' \
  "$src"/include/mdp/*.h | grep -v '^typedef' || true)
[ -n "$bare" ] && printf '%s\n' "$bare" | sed 's/^/# declared without MDP_EXTERN: /'
check "$([ -z "$bare" ]; echo $?)" "every public declaration carries MDP_EXTERN"
internal=$(grep -c '^mdp__' "$tmp/exported")
check "$([ "$internal" -eq 0 ]; echo $?)" "no mdp__ internal is exported"

# --- 2. the headers fit every consumer
printf '#include <mdp.h>\nint main(void) { return mdp_strerror(0) == 0; }\n' >"$tmp/h.c"
cp "$tmp/h.c" "$tmp/h.cpp"
flags=$(pkg-config --cflags libzmq libuv 2>/dev/null)
if g++ -std=c++11 -Wall -Wextra -Werror -I"$src/include" $flags -c "$tmp/h.cpp" \
  -o "$tmp/h_cpp.o" 2>"$tmp/cxx.err"; then
  ok "<mdp.h> compiles as C++11 (g++ -std=c++11 -Wall -Wextra -Werror)"
else
  sed 's/^/# /' "$tmp/cxx.err"
  not_ok "<mdp.h> compiles as C++11"
fi
if gcc -std=c99 -D_POSIX_C_SOURCE=200809L -pedantic -Wall -Wextra -Werror \
  -I"$src/include" $flags -c "$tmp/h.c" -o "$tmp/h_c99.o" 2>"$tmp/c99.err"; then
  ok "<mdp.h> compiles as strict C99 (-std=c99 -pedantic -Wall -Wextra -Werror)"
else
  sed 's/^/# /' "$tmp/c99.err"
  not_ok "<mdp.h> compiles as strict C99"
fi
# A C++ program links against the library: the headers' extern "C" works.
# (A sanitizer build's library needs the sanitizer's runtime in the program.)
san=${MDP_SANITIZE:-none}
sanflags=""
[ "$san" != none ] && sanflags="-fsanitize=$san"
if g++ -std=c++11 $sanflags "$tmp/h_cpp.o" -o "$tmp/h_cpp" -L"$build/lib" -lmdp \
  -Wl,-rpath,"$build/lib" 2>"$tmp/link.err" && "$tmp/h_cpp"; then
  ok "a C++ program links against libmdp.so and runs"
else
  sed 's/^/# /' "$tmp/link.err"
  not_ok "a C++ program links against libmdp.so and runs"
fi

# --- 3. the reference
if python3 "$src/scripts/gen-api-reference" --check 2>"$tmp/ref.err"; then
  ok "docs/api.md is what scripts/gen-api-reference writes"
else
  sed 's/^/# /' "$tmp/ref.err"
  not_ok "docs/api.md is up to date"
fi
nodoc=""
for s in $(cat "$tmp/exported"); do
  grep -q "^### \`$s\`\$" "$src/docs/api.md" || nodoc="$nodoc $s"
done
for s in $nodoc; do echo "# no entry in docs/api.md: $s"; done
check "$([ -z "$nodoc" ]; echo $?)" "every exported function has its entry in docs/api.md"
# A function's entry: "### `name`", "", "```c", its declaration, "```", "",
# then its description.
undoc=$(awk '/^### `mdp_[a-z0-9_]+`$/ {name = $2; for (i = 0; i < 6; i++) getline; if ($0 == "" || $0 ~ /^#/) print name}' "$src/docs/api.md")
for s in $undoc; do echo "# entry without a description: $s"; done
check "$([ -z "$undoc" ]; echo $?)" "every entry has its header comment"

echo "1..$n"
echo "# $((n - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
