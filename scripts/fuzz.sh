#!/usr/bin/env bash
# Runs every fuzz target in the module for a short time each (FUZZTIME,
# default 10s). Targets are discovered with `go test -list`, so a new Fuzz*
# function is picked up without editing this file. go test -fuzz accepts one
# package and one target per run, hence the loops.
set -euo pipefail

fuzztime=${FUZZTIME:-10s}
# Minimising each new interesting input may take up to a minute by default,
# during which nothing new is tried: a 10 s run could spend all of it there.
# A bounded minimisation keeps the short runs fuzzing (found crashes are
# still minimised, within the same bound).
minimize=${FUZZMINIMIZETIME:-200x}
found=0

# Only packages with test files can hold fuzz targets.
pkgs=$(go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' ./...)
for pkg in $pkgs; do
	# Two steps, so that a package whose tests do not build fails the run
	# instead of silently offering no targets.
	listing=$(go test -list '^Fuzz' "$pkg")
	targets=$(grep '^Fuzz' <<<"$listing" || true)
	for target in $targets; do
		found=$((found + 1))
		echo "fuzz: $pkg $target for $fuzztime"
		# go test -fuzz sometimes ends a clean run with "context deadline
		# exceeded" when fuzztime runs out while a worker is busy (no failing
		# input is written then). Such a run is repeated once; a real crash
		# writes its input under testdata/fuzz and fails both times.
		if ! out=$(go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime "$minimize" "$pkg" 2>&1); then
			echo "$out"
			if grep -q 'context deadline exceeded' <<<"$out" && ! grep -q 'Failing input written' <<<"$out"; then
				echo "fuzz: $target stopped on the fuzztime deadline without a failing input; running it once more"
				go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime "$minimize" "$pkg"
			else
				exit 1
			fi
		else
			echo "$out"
		fi
	done
done

if [[ $found -eq 0 ]]; then
	echo "fuzz: no fuzz targets found" >&2
	exit 1
fi
echo "fuzz: $found target(s) ran without failure"
