#!/bin/sh
# Render one scdoc page to roff for meson: scd2roff.sh SCDOC IN OUT VERSION.
# The version goes into the footer; ".nr HY 0" turns hyphenation off for good (scdoc's ".nh"
# comes before .TH, which turns it back on, and C names split by hyphens read as other words).
set -eu
scdoc=$1 in=$2 out=$3 version=$4
sed "s/@VERSION@/$version/g" "$in" | "$scdoc" > "$out.tmp"
{ printf '.nr HY 0\n'; cat "$out.tmp"; } > "$out"
rm -f "$out.tmp"
