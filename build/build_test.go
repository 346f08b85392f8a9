package build

import (
	"reflect"
	"strings"
	"testing"
)

// TestMetadataAndCopy builds an image with every config instruction and a
// COPY, and checks the config and the COPY layer.
func TestMetadataAndCopy(t *testing.T) {
	s := baseStore(t)
	ctx := contextDir(t, map[string]string{"app/main.sh": "echo main\n", "app/lib/x.txt": "x", "README": "r"})
	res := mustBuild(t, s, ctx, `FROM base:1
ARG VERSION=1.2
ENV APP_HOME=/srv/app V=$VERSION
LABEL org.example.version=$VERSION "two words"="a b"
EXPOSE 8080 53/udp
WORKDIR $APP_HOME
COPY --chown=app:staff --chmod=0750 app/ ./
USER app
VOLUME /data
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s CMD ["true"]
SHELL ["/bin/sh", "-ec"]
ONBUILD RUN echo triggered
MAINTAINER someone
ENTRYPOINT ["/bin/sh"]
CMD echo hi
`)
	img := imageConfig(t, s, res)
	c := img.Config
	if c.WorkingDir != "/srv/app" || c.User != "app" || !reflect.DeepEqual(c.Entrypoint, []string{"/bin/sh"}) ||
		!reflect.DeepEqual(c.Cmd, []string{"/bin/sh", "-ec", "echo hi"}) {
		t.Errorf("config: %+v", c.ImageConfig)
	}
	if !strings.Contains(strings.Join(c.Env, ","), "APP_HOME=/srv/app,V=1.2") {
		t.Errorf("env %v", c.Env)
	}
	if c.Labels["org.example.version"] != "1.2" || c.Labels["two words"] != "a b" {
		t.Errorf("labels %v", c.Labels)
	}
	if _, ok := c.ExposedPorts["8080/tcp"]; !ok || len(c.ExposedPorts) != 2 {
		t.Errorf("ports %v", c.ExposedPorts)
	}
	if _, ok := c.Volumes["/data"]; !ok || c.StopSignal != "SIGINT" {
		t.Errorf("volumes %v stopsignal %q", c.Volumes, c.StopSignal)
	}
	if c.Healthcheck == nil || c.Healthcheck.Interval.Seconds() != 5 || !reflect.DeepEqual(c.Healthcheck.Test, []string{"CMD", "true"}) {
		t.Errorf("healthcheck %+v", c.Healthcheck)
	}
	if !reflect.DeepEqual(c.Shell, []string{"/bin/sh", "-ec"}) || !reflect.DeepEqual(c.OnBuild, []string{"RUN echo triggered"}) || img.Author != "someone" {
		t.Errorf("shell %v onbuild %v author %q", c.Shell, c.OnBuild, img.Author)
	}
	// base layer, WORKDIR, COPY
	if n := layerCount(t, s, res); n != 3 {
		t.Fatalf("%d layers, want 3", n)
	}
	files := layerFiles(t, s, res, -1)
	f, ok := files["srv/app/main.sh"]
	if !ok || f.data != "echo main\n" || f.hdr.Uid != 1000 || f.hdr.Gid != 50 || f.hdr.Mode != 0o750 {
		t.Errorf("main.sh: %+v", f.hdr)
	}
	if _, ok := files["srv/app/lib/x.txt"]; !ok {
		t.Errorf("layer lacks lib/x.txt: %v", keys(files))
	}
	if _, ok := files["srv/app/README"]; ok {
		t.Error("README copied")
	}
	if len(img.History) != 1+14 { // ARG leaves no history, as in BuildKit
		t.Errorf("%d history entries: %+v", len(img.History), img.History)
	}
}

func keys(m map[string]entry) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
