(* An OCaml cohttp-lwt-unix server that calls Go: a goroutine doing real
   work on a request body streamed to it (POST /sha256), a sync function
   (GET /add?a=&b=), a loop task that awaits OCaml (GET /greet?name=), and a
   Go stream as a response body (GET /lines?n=). SIGINT or SIGTERM stops
   it gracefully: it stops taking connections, lets the requests in flight
   finish (2 s at most), then the bridge shuts down. *)

open Lwt.Infix
module I = Lwt_interop
module Server = Cohttp_lwt_unix.Server

(* What Go's greet task awaits: a user's title, Not_found for no name (a
   404); "slow" takes half a second. *)
let () =
  I.register_exception "not_found" Not_found;
  I.register "title" I.Ty.string I.Ty.string (fun name ->
      Lwt_unix.sleep (if name = "slow" then 0.5 else 0.) >>= fun () ->
      if name = "" then Lwt.fail Not_found else Lwt.return "Dr.")

let served = ref 0
let in_flight = ref 0

(* A request counts as in flight until its response body is written. *)
let counted f =
  incr in_flight;
  Lwt.finalize f (fun () ->
      decr in_flight;
      incr served;
      Lwt.return_unit)

let respond status body = Server.respond_string ~status ~body ()

let routes ~sha256 ~add ~greet ~lines req body =
  let uri = Cohttp.Request.uri req in
  let param k = Option.value ~default:"" (Uri.get_query_param uri k) in
  match (Cohttp.Request.meth req, Uri.path uri) with
  | `POST, "/sha256" -> sha256 (Cohttp_lwt.Body.to_stream body) >>= fun hex -> respond `OK (hex ^ "\n")
  | `GET, "/add" -> (
      match (int_of_string_opt (param "a"), int_of_string_opt (param "b")) with
      | Some a, Some b -> (
          match add a b with
          | sum -> respond `OK (string_of_int sum ^ "\n")
          | exception I.Go_error { message; _ } -> respond `Bad_request (message ^ "\n"))
      | _ -> respond `Bad_request "a and b are integers\n")
  | `GET, "/greet" -> greet (param "name") >>= fun s -> respond `OK (s ^ "\n")
  | `GET, "/lines" ->
      lines (Option.value ~default:0 (int_of_string_opt (param "n"))) >>= fun s ->
      (* In flight until the stream has been written, or 2 s after the
         client left. *)
      let written = Lwt.pick [ Lwt_stream.closed s; Lwt_unix.sleep 2. ] in
      incr in_flight;
      Lwt.on_termination written (fun () -> decr in_flight);
      Server.respond ~status:`OK ~body:(Cohttp_lwt.Body.of_stream s) ()
  | _ -> respond `Not_found "no such page\n"

(* Errors to status codes, and a deadline for every request. *)
let callback handle _conn req body =
  counted (fun () ->
      Lwt.catch
        (fun () -> Lwt_unix.with_timeout 2. (fun () -> handle req body))
        (function
          | Not_found -> respond `Not_found "no such user\n"
          | Lwt_unix.Timeout -> respond `Gateway_timeout "timeout\n"
          | I.Closed -> respond `Service_unavailable "shutting down\n"
          | e -> respond `Internal_server_error (Printexc.to_string e ^ "\n")))

let listen addr =
  let host, port =
    match String.rindex_opt addr ':' with
    | Some i -> (String.sub addr 0 i, int_of_string (String.sub addr (i + 1) (String.length addr - i - 1)))
    | None -> invalid_arg "ADDR is host:port"
  in
  let fd = Lwt_unix.socket Unix.PF_INET Unix.SOCK_STREAM 0 in
  Lwt_unix.setsockopt fd Unix.SO_REUSEADDR true;
  Lwt_unix.bind fd (Unix.ADDR_INET (Unix.inet_addr_of_string host, port)) >|= fun () ->
  Lwt_unix.listen fd 128;
  match Lwt_unix.getsockname fd with
  | Unix.ADDR_INET (a, p) -> (fd, Printf.sprintf "%s:%d" (Unix.string_of_inet_addr a) p)
  | _ -> assert false

let rec drained deadline =
  if !in_flight = 0 || Unix.gettimeofday () > deadline then Lwt.return_unit
  else Lwt_unix.sleep 0.01 >>= fun () -> drained deadline

let () =
  I.run (fun () ->
      let sha256 = I.bind "sha256" I.Ty.(stream string) I.Ty.string in
      let add = I.bind_fn_sync "add" I.Ty.(int @-> int @-> returning int) in
      let greet = I.bind "greet" I.Ty.string I.Ty.string in
      let lines = I.bind "lines" I.Ty.int I.Ty.(stream string) in
      listen (try Sys.getenv "ADDR" with Not_found -> "127.0.0.1:8080") >>= fun (fd, addr) ->
      Printf.printf "listening on %s\n%!" addr;
      let stop, stop_now = Lwt.wait () in
      let on_signal _ = if Lwt.is_sleeping stop then Lwt.wakeup_later stop_now () in
      ignore (Lwt_unix.on_signal Sys.sigint on_signal);
      ignore (Lwt_unix.on_signal Sys.sigterm on_signal);
      let server = Server.make ~callback:(callback (routes ~sha256 ~add ~greet ~lines)) () in
      Server.create ~stop ~mode:(`TCP (`Socket fd)) server >>= fun () ->
      (* No new connection; the requests in flight still call Go. *)
      drained (Unix.gettimeofday () +. 2.) >|= fun () ->
      Gc.full_major () (* Go streams OCaml dropped: their handles go *);
      let s = I.stats () in
      Printf.printf "stopped after %d requests; in flight %d; held: roots=%d handles=%d calls=%d tasks=%d\n%!"
        !served !in_flight s.roots s.handles s.calls s.tasks)
