package transport

import (
	"context"
	"fmt"

	"github.com/imgtool/imgtool/store"
)

// Env is what opening a location may need.
type Env struct {
	// Store is the local store, for Store locations.
	Store  *store.Store
	Remote RemoteOptions
}

// OpenSource opens loc for reading.
func OpenSource(ctx context.Context, loc Location, env Env) (Source, error) {
	switch loc.Kind {
	case Registry:
		return openRemoteSource(loc, env.Remote)
	case Store:
		if env.Store == nil {
			return nil, fmt.Errorf("open %s: no local store", loc)
		}
		return NewStoreSource(env.Store, loc.Ref), nil
	case OCILayout:
		return openLayoutSource(loc)
	case OCIArchive, DockerArchive:
		return openArchiveSource(loc)
	}
	return nil, fmt.Errorf("open %s: unknown transport", loc)
}

// OpenDestination opens loc for writing.
func OpenDestination(ctx context.Context, loc Location, env Env) (Destination, error) {
	switch loc.Kind {
	case Registry:
		return openRemoteDest(loc, env.Remote)
	case Store:
		if env.Store == nil {
			return nil, fmt.Errorf("open %s: no local store", loc)
		}
		return NewStoreDestination(env.Store), nil
	case OCILayout:
		return openLayoutDest(ctx, loc)
	case OCIArchive, DockerArchive:
		return openArchiveDest(loc)
	}
	return nil, fmt.Errorf("open %s: unknown transport", loc)
}
