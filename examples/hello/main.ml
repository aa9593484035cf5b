(* An OCaml/Lwt program that uses Go: it hashes with Go's crypto/sha256,
   and Go awaits an OCaml Lwt function. *)

open Lwt.Infix
module I = Lwt_interop

(* An Lwt function for Go to call, by name. *)
let () =
  I.register "greet" I.Ty.string I.Ty.string (fun name ->
      Lwt_unix.sleep 0.01 >|= fun () -> "hello, " ^ name)

let () =
  I.init ();
  let sha256 = I.bind "sha256" I.Ty.string I.Ty.string in
  let greet_all = I.bind "greet_all" I.Ty.(list string) I.Ty.(list string) in
  Lwt_main.run
    ( sha256 "abc" >>= fun h ->
      print_endline ("sha256(abc) = " ^ h);
      greet_all [ "Lwt"; "Go" ] >|= List.iter print_endline );
  I.shutdown ()
