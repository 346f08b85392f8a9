package build

import "testing"

// TestHeredocs: the heredoc forms BuildKit documents, each checked
// against what it gives: expansion in COPY unless the delimiter is
// quoted, <<- stripping tabs, several heredocs in one COPY and in one
// RUN (handed to the shell), --chmod on a heredoc.
func TestHeredocs(t *testing.T) {
	s := baseStore(t)
	res := mustBuild(t, s, t.TempDir(), "FROM base:1\nARG X=expanded\n"+
		"COPY <<EOF /copy-plain\nX is $X\nEOF\n"+
		"COPY <<'EOF' /copy-quoted\nX is $X\nEOF\n"+
		"COPY <<\"EOF\" /copy-dquoted\nX is ${X}\nEOF\n"+
		"RUN <<-EOF\n\techo tabs stripped > /run-chomp\n\tEOF\n"+
		"COPY <<one <<two /many/\nfirst\none\nsecond\ntwo\n"+
		"RUN cat <<A > /run-a && cat <<B > /run-b\nalpha $X\nA\nbeta\nB\n"+
		"COPY --chmod=0755 <<EOF /script.sh\n#!/bin/sh\necho hi\nEOF\n"+
		"RUN <<'EOF'\necho \"quoted, the shell expands: $X\" > /run-quoted\nEOF\n")
	for p, want := range map[string]string{
		"copy-plain":   "X is expanded\n",
		"copy-quoted":  "X is $X\n",
		"copy-dquoted": "X is ${X}\n",
		"run-chomp":    "tabs stripped\n",
		"many/one":     "first\n",
		"many/two":     "second\n",
		"run-a":        "alpha expanded\n",
		"run-b":        "beta\n",
		"script.sh":    "#!/bin/sh\necho hi\n",
		"run-quoted":   "quoted, the shell expands: expanded\n",
	} {
		if f := imageFile(t, s, res, p); f.data != want {
			t.Errorf("%s: %q, want %q", p, f.data, want)
		}
	}
	if f := imageFile(t, s, res, "script.sh"); f.hdr == nil || f.hdr.Mode != 0o755 {
		t.Errorf("COPY --chmod=0755 heredoc: %+v", f.hdr)
	}
}
