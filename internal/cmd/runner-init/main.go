// Command runner-init is the runner's container init as a program of its
// own. scripts/build.sh embeds it into imgtool, which writes it under the
// data root and starts it for each container (runner.Spec.Init): at about
// 2 MB it starts in a fraction of the time imgtool itself takes, whose
// package initialisation (the registry's storage drivers bring in
// prometheus, opentelemetry and grpc) would otherwise run a second time
// for every `imgtool run`.
package main

import (
	"fmt"
	"os"

	"github.com/imgtool/imgtool/runner"
)

func main() {
	if !runner.IsInit() {
		fmt.Fprintln(os.Stderr, "runner-init: this is imgtool's container init; `imgtool run` starts it")
		os.Exit(2)
	}
	runner.Init()
}
