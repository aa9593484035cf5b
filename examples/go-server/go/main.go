// The Go half of the go-server example: a net/http server whose handler
// calls OCaml's Lwt function "greet" and maps its errors to status codes.
package main

import "C" // a c-archive needs cgo

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"lwt"
)

// errNotFound is OCaml's Not_found (Lwt_interop.register_exception).
var errNotFound = errors.New("not found")

var server *http.Server

func greet(w http.ResponseWriter, r *http.Request) {
	f, err := lwt.Lookup[string, string]("greet")
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	// The request's context bounds the call: a client gone, or a timeout,
	// cancels OCaml's promise (Lwt.cancel).
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	s, err := f.Call(ctx, r.URL.Query().Get("name"))
	switch {
	case errors.Is(err, errNotFound):
		http.Error(w, "no such name", http.StatusNotFound)
	case errors.Is(err, context.DeadlineExceeded):
		http.Error(w, "timeout", http.StatusGatewayTimeout)
	case errors.Is(err, lwt.ErrClosed):
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	default:
		w.Write([]byte(s))
	}
}

func init() {
	lwt.MustRegisterError("not_found", errNotFound)

	// Starts the server on addr and returns the address it listens on.
	lwt.MustRegisterSync("server.start", func(addr string) (string, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return "", err
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/greet", greet)
		server = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go server.Serve(ln)
		return ln.Addr().String(), nil
	})

	// Stops taking requests and waits (up to secs) for those in flight,
	// then closes what is left: requests still running, and connections
	// that never sent one (Shutdown counts those idle only after 5 s).
	lwt.MustRegister("server.stop", func(ctx context.Context, secs float64) (struct{}, error) {
		ctx, cancel := context.WithTimeout(ctx, time.Duration(secs*float64(time.Second)))
		defer cancel()
		if err := server.Shutdown(ctx); err != nil {
			return struct{}{}, server.Close()
		}
		return struct{}{}, nil
	})
}

func main() {}
