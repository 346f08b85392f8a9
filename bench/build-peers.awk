# bench/build-peers.awk: the table of bench/build-peers.sh from its results,
# lines of "TOOL CASE SCENARIO RUN SECONDS RSS_KIB" (SECONDS "fail" when the
# build failed). Variables: peers and cases, space-separated.
function median(list,    n, v, i, j, t) {
	n = split(list, v, " ")
	for (i = 1; i <= n; i++) if (v[i] == "fail") return "fail"
	for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j-1] + 0 > v[j] + 0; j--) { t = v[j]; v[j] = v[j-1]; v[j-1] = t }
	return n % 2 ? v[(n+1)/2] : (v[n/2] + v[n/2+1]) / 2
}
function secs(v) { return v == "" ? "-" : v == "fail" ? "fail" : sprintf("%.2f s", v) }
function mib(k) { return k == "" || k == "-" ? "-" : sprintf("%d MiB", k / 1024) }
{
	key = $1 SUBSEP $2 SUBSEP $3
	t[key] = t[key] " " $5
	if ($6 != "-" && $6 + 0 > rss[$1, $2] + 0) rss[$1, $2] = $6
}
END {
	np = split(peers, peer, " ")
	nc = split(cases, cs, " ")
	ns = split("cold nochange onefile", sc, " ")
	label["cold"] = "cold"; label["nochange"] = "no-change rebuild"; label["onefile"] = "one file changed"
	goal["cold"] = 1.5; goal["nochange"] = 3; goal["onefile"] = 2
	printf "\nfloor (tar | zstd -T0 -3 | sha256sum over the context): %s\n", secs(median(t["floor", "ctx", "floor"]))
	for (c = 1; c <= nc; c++) {
		k = cs[c]
		if (k == "scratch") printf "\ncase scratch: FROM scratch + COPY . /data\n"
		else printf "\ncase busybox: FROM busybox (made here) + COPY . /data + RUN find | wc, du over /data\n"
		printf "%-18s %10s", "", "imgtool"
		for (p = 1; p <= np; p++) printf " %16s", peer[p]
		printf "   %-16s %-20s %s\n", "fastest peer", "imgtool/fastest", "target"
		for (s = 1; s <= ns; s++) {
			m = median(t["imgtool", k, sc[s]])
			printf "%-18s %10s", label[sc[s]], secs(m)
			best = ""; bestp = "-"
			for (p = 1; p <= np; p++) {
				v = median(t[peer[p], k, sc[s]])
				printf " %16s", secs(v)
				if (v != "" && v != "fail" && (best == "" || v + 0 < best + 0)) { best = v; bestp = peer[p] }
			}
			if (m == "" || m == "fail" || best == "" || m + 0 <= 0) { printf "   %-16s %-16s\n", bestp, "-"; continue }
			x = best / m
			met = x >= goal[sc[s]] && (sc[s] != "nochange" || m + 0 < 1)
			printf "   %-16s %-20s %s\n", bestp, sprintf("%.2f (%.1fx %s)", m / best, x >= 1 ? x : 1 / x, x >= 1 ? "faster" : "slower"),
				sprintf("%s%.1fx faster: %s", sc[s] == "nochange" ? "< 1 s and >= " : ">= ", goal[sc[s]], met ? "met" : "MISSED")
		}
		printf "%-18s %10s", "peak RSS", mib(rss["imgtool", k])
		for (p = 1; p <= np; p++) printf " %16s", mib(rss[peer[p], k])
		r = rss["imgtool", k]
		printf "   %-16s %-20s %s\n", "", "", r == "" ? "" : sprintf("imgtool < 256 MiB: %s", r + 0 < 256 * 1024 ? "met" : "MISSED")
		if (("buildkitd", k) in rss) printf "%-18s %10s %s\n", "buildkitd peak", "", mib(rss["buildkitd", k]) " (the daemon, over the whole case; the buildkit column is buildctl's)"
	}
}
