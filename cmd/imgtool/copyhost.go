package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/imgtool/imgtool/internal/bundlename"
	"github.com/imgtool/imgtool/store"
	"github.com/imgtool/imgtool/store/transport"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
)

// registryRoot says whether a registry destination names a registry (or
// a namespace in one) rather than an image: "docker://HOST[:PORT]", which
// is no image reference, or "docker://HOST[:PORT]/PREFIX/" with a
// trailing slash. It returns the prefix images are pushed under.
func registryRoot(dst transport.Location) (string, bool) {
	if dst.Kind != transport.Registry {
		return "", false
	}
	ref := dst.Ref
	if strings.HasSuffix(ref, "/") {
		return strings.TrimRight(ref, "/"), strings.Trim(ref, "/") != ""
	}
	if strings.Contains(ref, "/") || strings.Contains(ref, "@") {
		return "", false
	}
	// A bare word is an image of docker.io ("busybox", "busybox:1"); a
	// host has a dot or is localhost, and its port is a number. A
	// dotless host takes the trailing-slash form.
	host, port, hasPort := strings.Cut(ref, ":")
	if hasPort && (port == "" || strings.Trim(port, "0123456789") != "") {
		return "", false
	}
	return ref, host == "localhost" || strings.Contains(host, ".")
}

// rootedName is where image im goes under root: the repository
// registry import would give it, and its tag or digest.
func rootedName(root string, im store.Image, scoped bool) (string, error) {
	if im.Name == "" {
		return "", fmt.Errorf("image %s has no name in the source: copy it alone to docker://HOST/REPOSITORY:TAG", im.Descriptor.Digest)
	}
	ref, err := name.ParseReference(im.Name)
	if err != nil {
		return "", fmt.Errorf("image %s: %w", im.Descriptor.Digest, err)
	}
	sep := ":"
	if _, ok := ref.(name.Digest); ok {
		sep = "@"
	}
	return root + "/" + bundlename.Repository(ref, scoped) + sep + ref.Identifier(), nil
}

// rootedNames names every image under root, refusing two different
// images that would get one name.
func rootedNames(root string, images []store.Image, scoped bool) ([]string, error) {
	names := make([]string, len(images))
	seen := map[string]store.Image{}
	for i, im := range images {
		n, err := rootedName(root, im, scoped)
		if err != nil {
			return nil, err
		}
		if prev, ok := seen[n]; ok && prev.Descriptor.Digest != im.Descriptor.Digest {
			return nil, fmt.Errorf("%s and %s would both be %s: copy with --scoped to keep their registries apart", prev.Name, im.Name, n)
		}
		seen[n], names[i] = im, n
	}
	return names, nil
}

// transferToRoot copies every image of src into the registry (namespace)
// root, each under its own repository and tag, referrers by digest. An
// index is copied whole unless --platform picks one of it, so every
// digest stays the same.
func (o *globalOptions) transferToRoot(ctx context.Context, cmd *cobra.Command, env transport.Env, src transport.Source, images []store.Image, root string, j transferJob) error {
	if f := cmd.Flags().Lookup("platform"); f == nil || !f.Changed {
		j.opts.AllPlatforms = true
	}
	names, err := rootedNames(root, images, j.scoped)
	if err != nil {
		return err
	}
	disp := newDisplay(ctx, o.progress, os.Stderr)
	j.opts.Progress = disp
	var done []ocispec.Descriptor
	for i, im := range images {
		n := names[i]
		dst, err := transport.OpenDestination(ctx, transport.Location{Kind: transport.Registry, Ref: n}, env)
		if err != nil {
			disp.Wait()
			return err
		}
		d, err := transport.Copy(ctx, src, dst, im, n, j.opts)
		if err == nil {
			err = dst.Close()
		}
		if err != nil {
			disp.Wait()
			return fmt.Errorf("copy %s to %s: %w", im.Name, n, err)
		}
		done = append(done, d)
	}
	disp.Wait()
	for i, d := range done {
		if o.progress != "quiet" {
			fmt.Fprintf(os.Stderr, "%s %s as %s\n", j.verb, d.Digest, names[i])
		}
		fmt.Fprintln(cmd.OutOrStdout(), d.Digest)
	}
	return nil
}
