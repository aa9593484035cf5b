# make bench-instr: callgrind's dumps (one per measure: "LABEL N" and the
# instructions counted since its zero) to the TSV of make bench (name,
# value, unit, baseline, ratio, target, met), one instruction count per
# iteration or call, and for the seed, the go-task variant's instructions
# above pure Lwt's against their targets.
/^desc: Trigger: Client Request: / { split($0, w, ": "); split(w[4], l, " "); name = l[1]; n = l[2] }
/^summary: / && name != "" { value[name] = $2 / n; order[++count] = name; name = "" }
END {
	for (i = 1; i <= count; i++) {
		f = order[i]
		base = "-"; ratio = "-"
		if (f ~ /^seed\//) {
			split(f, p, "/")
			b = "seed/" p[2] "/pure-lwt"
			if (f != b && b in value) { base = "instr/" b; ratio = sprintf("%.4f", value[f] / value[b]) }
			f = "instr/" f
		}
		printf "%s\t%.0f\tinstr/op\t%s\t%s\t-\t-\n", f, value[order[i]], base, ratio
	}
	split("pause 1500 auto_pause 600", t, " ")
	for (j = 1; j < 4; j += 2) {
		g = "seed/" t[j] "/go-task"; b = "seed/" t[j] "/pure-lwt"
		if (g in value && b in value) {
			extra = value[g] - value[b]
			printf "instr/seed/%s/go-task-above-pure-lwt\t%.0f\tinstr/iter\t-\t-\t<= %s\t%s\n", t[j], extra, t[j+1], extra <= t[j+1] ? "met" : "missed"
		}
	}
}
