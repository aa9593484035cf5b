# Turns make bench's TSV (bench/bench.ml says its columns) into the
# Markdown table of BENCHMARKS.md: awk -f bench/tsv2md.awk bench.tsv
BEGIN {
  FS = "\t"
  print "| figure | value | baseline | ratio | target |"
  print "|---|---:|---|---:|---|"
}
function num(v,    s, neg, out) {
  if (v + 0 >= 100) {
    s = sprintf("%.0f", v); out = ""
    while (length(s) > 3) { out = "," substr(s, length(s) - 2) out; s = substr(s, 1, length(s) - 3) }
    return s out
  }
  if (v + 0 >= 1) return sprintf("%.3g", v)
  return sprintf("%.3f", v)
}
{
  base = ($4 == "-") ? "" : "`" $4 "`"
  ratio = ($5 == "-") ? "" : sprintf("%.3f", $5)
  target = ($6 == "-") ? "" : $6 ": " $7
  printf "| `%s` | %s %s | %s | %s | %s |\n", $1, num($2), $3, base, ratio, target
}
