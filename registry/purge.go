package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"time"
)

// PurgeUploads deletes the upload sessions started before cutoff, which
// clients that went away without finishing or cancelling leave behind. It
// is idempotent, so every replica may run it. It returns how many it
// deleted.
func (g *Registry) PurgeUploads(ctx context.Context, cutoff time.Time) (int, error) {
	return g.purgeUploads(ctx, cutoff, false)
}

// purgeUploads finds the sessions started before cutoff and, unless
// dryRun, deletes them; it returns how many it found.
func (g *Registry) purgeUploads(ctx context.Context, cutoff time.Time, dryRun bool) (int, error) {
	var repos []string
	if err := g.collectRepos(ctx, repositoriesPath(), "", 0, holdsUploads, &repos); err != nil {
		return 0, err
	}
	n := 0
	for _, name := range repos {
		sessions, err := g.driver.List(ctx, path.Join(repoPath(name), "_uploads"))
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("purge uploads of %s: %w", name, err)
		}
		for _, s := range sessions {
			id := path.Base(s)
			started, err := g.uploadStarted(ctx, name, id)
			if err != nil {
				return n, err
			}
			if started.IsZero() || started.After(cutoff) {
				continue
			}
			if dryRun {
				n++
				continue
			}
			if err := g.abortUpload(ctx, name, id); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// uploadStarted says when session id began: from its state, or for a
// session whose state was never written, from its data's modification
// time. Zero means unknown, and the session is left alone.
func (g *Registry) uploadStarted(ctx context.Context, name, id string) (time.Time, error) {
	if !uploadRE().MatchString(id) {
		return time.Time{}, nil
	}
	u, err := g.loadState(ctx, name, id)
	if err == nil {
		return u.state.Started, nil
	}
	var ae *apiError
	if !errors.As(err, &ae) {
		return time.Time{}, err
	}
	fi, err := g.driver.Stat(ctx, uploadDataPath(name, id))
	if err != nil {
		return time.Time{}, nil
	}
	return fi.ModTime(), nil
}

// purgeLoop purges sessions older than ttl now and every interval until
// ctx is done.
func (g *Registry) purgeLoop(ctx context.Context, ttl, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		n, err := g.PurgeUploads(ctx, time.Now().Add(-ttl))
		if err != nil && ctx.Err() == nil {
			slog.ErrorContext(ctx, "purge abandoned uploads", "err", err)
		} else if n > 0 {
			slog.InfoContext(ctx, "purged abandoned uploads", "count", n, "older than", ttl)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
