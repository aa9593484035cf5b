package main

// The Go side of make bench's app group: the handler of a cohttp server
// (bench/app.ml) as each kind of Go function.

import (
	"context"

	"lwt"
)

func registerApp() {
	greet := func(_ context.Context, name string) (string, error) { return "hello, " + name, nil }
	must(lwt.Register("app.greet.goroutine", greet))
	must(lwt.RegisterTask("app.greet.task", greet))
	must(lwt.RegisterSync("app.greet.sync", func(name string) (string, error) { return "hello, " + name, nil }))
}
