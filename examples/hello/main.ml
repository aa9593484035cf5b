(* An OCaml/Lwt program that uses Go: it hashes with Go's crypto/sha256,
   Go awaits an OCaml Lwt function, a record and a variant cross, and Go
   hands OCaml a closure and a promise. *)

open Lwt.Infix
module I = Lwt_interop

(* An Lwt function for Go to call, by name. *)
let () =
  I.register "greet" I.Ty.string I.Ty.string (fun name ->
      Lwt_unix.sleep 0.01 >|= fun () -> "hello, " ^ name)

(* A variant and a record, each declared once: Go's types must match. *)
type shape = Circle of float | Rect of float * float
type drawing = { title : string; shapes : shape list }

let shape =
  I.Ty.(
    variant "shape" (fun circle rect -> function
      | Circle r -> circle r | Rect (w, h) -> rect (w, h))
    |~ case1 "Circle" float (fun r -> Circle r)
    |~ case1 "Rect" (pair float float) (fun (w, h) -> Rect (w, h))
    |> sealv)

let drawing =
  I.Ty.(
    record "drawing" (fun title shapes -> { title; shapes })
    |+ field "title" string (fun d -> d.title)
    |+ field "shapes" (list shape) (fun d -> d.shapes)
    |> sealr)

let () =
  I.init ();
  let sha256 = I.bind "sha256" I.Ty.string I.Ty.string in
  let greet_all = I.bind "greet_all" I.Ty.(list string) I.Ty.(list string) in
  let area = I.bind "area" drawing I.Ty.float in
  let counter = I.bind_sync "counter" I.Ty.unit I.Ty.(sync_func unit int) in
  let later = I.bind_sync "later" I.Ty.string I.Ty.(promise string) in
  Lwt_main.run
    ( sha256 "abc" >>= fun h ->
      print_endline ("sha256(abc) = " ^ h);
      greet_all [ "Lwt"; "Go" ] >|= List.iter print_endline >>= fun () ->
      area { title = "two shapes"; shapes = [ Circle 1.; Rect (2., 3.) ] } >>= fun a ->
      Printf.printf "area = %.2f\n" a;
      let next = counter () in
      ignore (next ());
      Printf.printf "the Go closure counted %d\n" (next ());
      later "a Go promise, settled" >|= print_endline );
  I.shutdown ()
