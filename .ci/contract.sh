#!/usr/bin/env bash
# The API contract checks: buf lint, buf breaking against the committed baseline (and a fixture
# proving a renumbered field is caught), the TypeScript client's generated code is current, and
# the TypeScript client's end-to-end tests against the gateway binary.
#
#   .ci/contract.sh                     run every check (exits non-zero when one fails)
#   .ci/contract.sh --update-baseline   REGENERATE THE BREAKING BASELINE proto-baseline/image.binpb
#                                       from proto/ as it is now (do this, and commit the file, in
#                                       the change that intentionally breaks the contract), then run
#                                       the checks
#
# The baseline by hand (the same command):
#   clients/typescript/node_modules/.bin/buf build --exclude-source-info -o proto-baseline/image.binpb
#
# Environment:
#   ACK_GATEWAY_BIN                the gateway binary for the client tests
#                                  (default target/debug/ack-gateway; build it first)
#   CONTRACT_SKIP_CLIENT_TESTS=1   skip the TypeScript end-to-end tests (no binary needed)
#
# Tools come from npm only: buf (@bufbuild/buf), protoc-gen-es, tsc, pinned in
# clients/typescript/package-lock.json and installed with `npm ci`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
pkg="$root/clients/typescript"
buf="$pkg/node_modules/.bin/buf"
baseline="proto-baseline/image.binpb"
passed=0
failed=0
failures=()

step() { echo; echo "=== contract: $*"; }
ok() { passed=$((passed + 1)); echo "--- PASS: $*"; }
fail() { failed=$((failed + 1)); failures+=("$*"); echo "--- FAIL: $*"; }

update_baseline=0
for arg in "$@"; do
  case "$arg" in
    --update-baseline) update_baseline=1 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "contract.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

step "npm ci (clients/typescript: buf, protoc-gen-es, typescript, connect)"
(cd "$pkg" && npm ci --no-audit --no-fund)
"$buf" --version

if [[ $update_baseline == 1 ]]; then
  step "regenerating the breaking baseline $baseline"
  mkdir -p "$(dirname "$baseline")"
  "$buf" build --exclude-source-info -o "$baseline"
  echo "wrote $baseline ($(wc -c < "$baseline") bytes); commit it"
fi

step "buf lint (STANDARD; exceptions in buf.yaml)"
if "$buf" lint; then ok "buf lint"; else fail "buf lint"; fi

step "buf breaking --against $baseline"
if [[ ! -f $baseline ]]; then
  fail "buf breaking: $baseline missing (.ci/contract.sh --update-baseline)"
elif "$buf" breaking --against "$baseline"; then
  ok "buf breaking"
else
  fail "buf breaking (an intentional break? regenerate the baseline: .ci/contract.sh --update-baseline)"
fi

# The fixture: the current proto/ with one field renumbered (IssueCredentialRequest.policy,
# 3 -> 4, in ackgateway/v1/broker.proto). It is made from the tree as it is, so it never goes
# stale; buf breaking must refuse it and name the field.
step "fixture: a renumbered field must fail buf breaking"
fixture="$(mktemp -d)"
trap 'rm -rf "$fixture"' EXIT
cp -r proto buf.yaml "$fixture/"
target="$fixture/proto/ackgateway/v1/broker.proto"
sed -i -E 's/^(  optional string policy = )3;$/\14;/' "$target"
if ! grep -qE '^  optional string policy = 4;$' "$target"; then
  fail "fixture: could not renumber IssueCredentialRequest.policy in ackgateway/v1/broker.proto (update the fixture in .ci/contract.sh)"
elif [[ ! -f $baseline ]]; then
  fail "fixture: $baseline missing"
else
  diff -u proto/ackgateway/v1/broker.proto "$target" | sed 's/^/    /' || true
  set +e
  out="$(cd "$fixture" && "$buf" breaking --against "$root/$baseline" 2>&1)"
  rc=$?
  set -e
  echo "$out" | sed 's/^/    buf breaking: /'
  if [[ $rc != 0 ]] && grep -q 'field "3" with name "policy" on message "IssueCredentialRequest" was deleted' <<< "$out"; then
    ok "fixture: buf breaking refused the renumbered field (exit $rc)"
  else
    fail "fixture: buf breaking did not report the renumbered field (exit $rc)"
  fi
fi

step "TypeScript client: generated code is current"
if bash "$pkg/scripts/check-generated.sh"; then ok "generated code current"; else fail "generated code current"; fi

step "TypeScript client: tsc build"
if (cd "$pkg" && npm run --silent build); then ok "tsc build"; else fail "tsc build"; fi

if [[ ${CONTRACT_SKIP_CLIENT_TESTS:-0} == 1 ]]; then
  step "TypeScript client tests: skipped (CONTRACT_SKIP_CLIENT_TESTS=1)"
else
  # A relative ACK_GATEWAY_BIN is the repository root's (the tests run in the package).
  export ACK_GATEWAY_BIN="$(realpath -m "${ACK_GATEWAY_BIN:-target/debug/ack-gateway}")"
  step "TypeScript client tests against $ACK_GATEWAY_BIN (node --test)"
  if (cd "$pkg" && npm run --silent build:test && node --test --test-concurrency=1 build-test/*.test.js); then
    ok "client tests"
  else
    fail "client tests"
  fi
fi

echo
for f in "${failures[@]}"; do echo "contract: FAILED: $f"; done
echo "contract: $passed passed, $failed failed"
[[ $failed == 0 ]]
