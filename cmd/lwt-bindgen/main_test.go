package main

import (
	"bytes"
	"os"
	"os/exec"
	"testing"
)

// TestBindingsAreCurrent regenerates the bindings of test/gomain (which the
// end-to-end suite compiles and calls) and of test/collide (whose names
// collide in OCaml: the suite compiles them), and fails if a file in the
// tree differs: run go generate in the package.
func TestBindingsAreCurrent(t *testing.T) {
	for pkgDir, file := range map[string]string{
		"../../test/gomain": "../../test/go_bindings.ml", "../../test/collide": "../../test/collide_bindings.ml",
	} {
		pkg, files, err := load(pkgDir)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := generate(&buf, pkg, files, "Lwt_interop"); err != nil {
			t.Fatal(err)
		}
		have, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(have, buf.Bytes()) {
			cmd := exec.Command("diff", "-u", file, "-")
			cmd.Stdin = bytes.NewReader(buf.Bytes())
			diff, _ := cmd.CombinedOutput()
			t.Errorf("%s is not current: run go generate in %s\n%s", file, pkgDir, diff)
		}
	}
}

func TestIdent(t *testing.T) {
	for in, want := range map[string]string{
		"UserID": "user_id", "HTTPServer": "http_server", "greet_all": "greet_all", "bench.echo.task": "bench_echo_task",
		"Type": "type_", "9lives": "f_9lives", "X": "x", "utf8Len": "utf8_len",
	} {
		if got := ident(in); got != want {
			t.Errorf("ident(%q) = %q, want %q", in, got, want)
		}
	}
}
