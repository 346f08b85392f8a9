package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// interruptContext is signal.NotifyContext(context.Background(),
// os.Interrupt, syscall.SIGTERM) with its handlers set by a goroutine:
// os/signal enables each signal in a round trip to a thread it starts
// first, some 0.2 ms every command (`imgtool run` above all) would
// otherwise wait for before it starts its work. A signal that comes
// before they are set ends the process, as one during its start does.
// Like NotifyContext's before stop, the handlers stay: a second signal
// does not end the process either.
func interruptContext() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	set := make(chan struct{})
	go func() {
		c := make(chan os.Signal, 1)
		signal.Notify(c, os.Interrupt, syscall.SIGTERM)
		close(set)
		<-c
		cancel()
	}()
	return context.WithValue(ctx, interruptsKey{}, (<-chan struct{})(set))
}

type interruptsKey struct{}
