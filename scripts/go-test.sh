#!/usr/bin/env bash
# go test with one line per package the moment it ends ("ok  pkg  12.3s", "FAIL  pkg  4.5s"), not in
# package order as plain go test prints them (which holds every line behind the slowest package
# before it). A failing package's failed tests and its own output come with its FAIL line; build
# errors come as they happen. The arguments are go test's (make test and make check pass theirs);
# the exit status is go test's. It reads go test -json with jq.
set -euo pipefail
GO=${GO:-go}

# foreach keeps, per package, the output lines of each test until the test passes or is skipped (then
# they are dropped); when the package ends it prints the package's line and, when it failed, the
# output still kept: the tests that failed and the tests that never ended (a panic, a test binary
# killed or exited in the middle of one), with the package's own output.
# shellcheck disable=SC2016
filter='
def line($e; $word): "\($word)\t\($e.Package)\t\(($e.Elapsed // 0) * 1000 | round / 1000)s";
foreach (inputs | . as $raw | (try fromjson catch {Raw: $raw})) as $e (
  {out: {}, emit: null};
  .emit = null
  | if $e.Raw != null then .emit = $e.Raw
    elif $e.Action == "build-output" then .emit = ($e.Output | rtrimstr("\n"))
    elif $e.Action == "output" then .out[$e.Package][$e.Test // ""] += [$e.Output]
    elif ($e.Action == "pass" or $e.Action == "skip") and $e.Test != null then del(.out[$e.Package][$e.Test])
    elif ($e.Action == "pass" or $e.Action == "fail" or $e.Action == "skip") and $e.Test == null then
      (.out[$e.Package] // {}) as $out
      | .emit = if $e.Action == "fail" then
            ([$out[""] // [] | .[] | select(. == "FAIL\n" or startswith("ok ") or startswith("FAIL\t") | not)]
             + [$out | keys[] | select(. != "") as $t | $out[$t][]] | join("")) as $why
            | $why + line($e; "FAIL")
          elif $e.Action == "pass" then line($e; "ok  ")
          else "?   \t\($e.Package)\t[no test files]" end
      | del(.out[$e.Package])
    else . end;
  .emit // empty)'

"$GO" test -json "$@" 2>&1 | jq -nrR --unbuffered "$filter"
