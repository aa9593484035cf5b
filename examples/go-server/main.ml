(* A Go net/http server in an OCaml/Lwt program: each request calls OCaml
   Lwt functions, from the handler's goroutine. SIGINT or SIGTERM stops it
   gracefully: Go's server stops taking requests and finishes those in
   flight while the Lwt loop still runs, then the bridge shuts down. *)

open Lwt.Infix
module I = Lwt_interop

(* What the requests call: an Lwt function that waits a little ("slow": half
   a second), and fails for an empty name (Not_found is a 404 in Go). *)
let served = ref 0

let () =
  I.register_exception "not_found" Not_found;
  I.register "greet" I.Ty.string I.Ty.string (fun name ->
      Lwt_unix.sleep (if name = "slow" then 0.5 else 0.001) >>= fun () ->
      if name = "" then Lwt.fail Not_found
      else (
        incr served;
        Lwt.return ("hello, " ^ name)))

let () =
  I.run (fun () ->
      let start = I.bind_sync "server.start" I.Ty.string I.Ty.string in
      let stop = I.bind "server.stop" I.Ty.float I.Ty.unit in
      let addr = start (try Sys.getenv "ADDR" with Not_found -> "127.0.0.1:8080") in
      Printf.printf "listening on %s\n%!" addr;
      let stopping, stop_now = Lwt.wait () in
      let on_signal _ = if Lwt.is_sleeping stopping then Lwt.wakeup_later stop_now () in
      ignore (Lwt_unix.on_signal Sys.sigint on_signal);
      ignore (Lwt_unix.on_signal Sys.sigterm on_signal);
      stopping >>= fun () ->
      (* Go's server first, while the Lwt loop runs the calls in flight. *)
      Lwt.catch
        (fun () -> stop 2.0)
        (fun e ->
          prerr_endline ("stopping the server: " ^ Printexc.to_string e);
          Lwt.return_unit));
  let s = I.stats () in
  Printf.printf "stopped after %d greetings; held: roots=%d calls=%d tasks=%d\n" !served s.roots s.calls s.tasks
