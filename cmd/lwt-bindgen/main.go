// Command lwt-bindgen writes the OCaml side of a Go package's bindings: for
// every Go function the package registers for OCaml (lwt.Register,
// RegisterTask, RegisterSync and their Must twins, with a constant name),
// a typed OCaml function bound to it; for every Go struct and variant
// (lwt.RegisterVariant) those functions use, an OCaml type and its
// Lwt_interop.Ty. Run it with go generate from the package:
//
//	//go:generate go run lwt/cmd/lwt-bindgen -o ../go_bindings.ml .
//
// The OCaml module binds each function on its first call (after
// Lwt_interop.init). What it cannot express (a recursive type, a Go type
// with no OCaml match) is left out, with a comment saying why.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
)

func main() {
	out := flag.String("o", "", "the OCaml file to write (default: standard output)")
	module := flag.String("lib", "Lwt_interop", "the OCaml module of the bridge")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: lwt-bindgen [-o FILE.ml] [-lib Lwt_interop] [PACKAGE_DIR]")
		flag.PrintDefaults()
	}
	flag.Parse()
	dir := "."
	if flag.NArg() == 1 {
		dir = flag.Arg(0)
	} else if flag.NArg() > 1 {
		flag.Usage()
		os.Exit(2)
	}
	pkg, files, err := load(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lwt-bindgen:", err)
		os.Exit(1)
	}
	var buf bytes.Buffer
	if err := generate(&buf, pkg, files, *module); err != nil {
		fmt.Fprintln(os.Stderr, "lwt-bindgen:", err)
		os.Exit(1)
	}
	if *out == "" {
		os.Stdout.Write(buf.Bytes())
		return
	}
	if err := os.WriteFile(*out, buf.Bytes(), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "lwt-bindgen:", err)
		os.Exit(1)
	}
}

// load type-checks the package in dir against the export data of its
// dependencies, which go list builds.
func load(dir string) (*types.Package, []*ast.File, error) {
	cmd := exec.Command("go", "list", "-deps", "-export", "-json=ImportPath,Dir,GoFiles,CgoFiles,Export,Name", ".")
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	outb, err := cmd.Output()
	if err != nil {
		return nil, nil, fmt.Errorf("go list in %s: %w", dir, err)
	}
	type listed struct {
		ImportPath, Dir, Export, Name string
		GoFiles, CgoFiles             []string
	}
	exports := map[string]string{}
	var target listed
	for dec := json.NewDecoder(bytes.NewReader(outb)); ; {
		var p listed
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			return nil, nil, err
		}
		exports[p.ImportPath] = p.Export
		target = p // go list -deps lists the package itself last
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, name := range append(target.GoFiles, target.CgoFiles...) {
		f, err := parser.ParseFile(fset, filepath.Join(target.Dir, name), nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, nil, err
		}
		files = append(files, f)
	}
	conf := types.Config{
		FakeImportC: true,
		Importer: importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
			if e := exports[path]; e != "" {
				return os.Open(e)
			}
			return nil, fmt.Errorf("no export data for %s", path)
		}),
	}
	info := &types.Info{Types: map[ast.Expr]types.TypeAndValue{}, Uses: map[*ast.Ident]types.Object{},
		Instances: map[*ast.Ident]types.Instance{}}
	pkg, err := conf.Check(target.ImportPath, fset, files, info)
	if err != nil {
		return nil, nil, err
	}
	checked, fileSet = info, fset
	return pkg, files, nil
}

// What the type checker found (the calls' types) and where.
var (
	checked *types.Info
	fileSet *token.FileSet
)
