package manifest

// Command merges an image's Entrypoint and Cmd with a run's overrides
// exactly as docker run does: an entrypoint override (non-nil; empty
// clears it) also drops the image's Cmd, and trailing arguments replace
// Cmd. The result is the argv to execute, empty when there is nothing.
func Command(entrypoint, cmd []string, entrypointOverride *[]string, args []string) []string {
	if entrypointOverride != nil {
		entrypoint, cmd = *entrypointOverride, nil
	}
	if len(args) > 0 {
		cmd = args
	}
	return append(append([]string(nil), entrypoint...), cmd...)
}
