# bench/ports.sh: loopback port helpers for the bench scripts that start
# servers (sourced, not run).

# free_port FIRST LAST prints the first port in FIRST..LAST that nothing
# on 127.0.0.1 answers.
free_port() {
	local port
	for port in $(seq "$1" "$2"); do
		(echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null || { echo "$port"; return; }
	done
	echo "no free port on 127.0.0.1 in $1..$2" >&2
	exit 1
}

# wait_port PORT waits (at most 10 s) for a server to answer on
# 127.0.0.1:PORT, and ends the script if none does.
wait_port() {
	for _ in $(seq 200); do
		(echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return
		sleep 0.05
	done
	echo "registry on port $1 did not start" >&2
	exit 1
}
