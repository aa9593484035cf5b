(* make bench's app group: a cohttp-lwt-unix server whose handler answers
   "hello, NAME" in OCaml (pure-ocaml) or by calling Go (go-sync,
   go-goroutine, go-task), loaded by bench/loadgen (16 keep-alive
   connections on 127.0.0.1, in another process): requests/s, the server's
   CPU time per request (µs, every thread of it) and the requests' p99 (ms),
   each kind against pure-ocaml. Then the latency hazard: the same while Go
   goroutines keep every P busy computing (loaded/...), and with their work
   in lwt.Compute (computed/...), each against itself unloaded. Loadgen
   takes a CPU's share too: what counts is the ratios. The variants run in
   turn, for rounds; the figures go to a TSV (name, value, unit, baseline)
   that bench.exe reads. *)

open Lwt.Infix
module I = Lwt_interop
module Server = Cohttp_lwt_unix.Server

let secs = ref 3.
let out = ref ""
let loadgen = ref ""

let () =
  Arg.parse
    [
      ("--secs", Arg.Set_float secs, "S  seconds per variant");
      ("--tsv", Arg.Set_string out, "PATH  where to write the figures");
      ("--loadgen", Arg.Set_string loadgen, "EXE  bench/loadgen");
    ]
    (fun a -> raise (Arg.Bad a))
    "app.exe --secs S --tsv PATH --loadgen EXE"

let kinds = [ "pure-ocaml"; "go-sync"; "go-goroutine"; "go-task" ]

let handler () =
  let sync = I.bind_sync "app.greet.sync" I.Ty.string I.Ty.string in
  let goroutine = I.bind "app.greet.goroutine" I.Ty.string I.Ty.string in
  let task = I.bind "app.greet.task" I.Ty.string I.Ty.string in
  fun _conn req _body ->
    let uri = Cohttp.Request.uri req in
    let name = Option.value ~default:"" (Uri.get_query_param uri "name") in
    let respond body = Server.respond_string ~status:`OK ~body () in
    match Uri.path uri with
    | "/pure-ocaml" -> respond ("hello, " ^ name)
    | "/go-sync" -> respond (sync name)
    | "/go-goroutine" -> goroutine name >>= respond
    | "/go-task" -> task name >>= respond
    | _ -> Server.respond_string ~status:`Not_found ~body:"" ()

type sample = { requests : float; secs : float; cpu : float; p99 : float list }

let cpu_now () =
  let t = Unix.times () in
  t.Unix.tms_utime +. t.Unix.tms_stime

(* One run of loadgen against a kind, for dt seconds. *)
let run_load addr kind dt =
  let cmd =
    ( !loadgen,
      [| !loadgen; "-url"; Printf.sprintf "http://%s/%s?name=x" addr kind; "-want"; "hello, x"; "-conns"; "16";
         "-secs"; Printf.sprintf "%g" dt |] )
  in
  let t0 = Unix.gettimeofday () and c0 = cpu_now () in
  Lwt_process.pread_line cmd >|= fun line ->
  let secs = Unix.gettimeofday () -. t0 and cpu = cpu_now () -. c0 in
  match String.split_on_char ' ' line with
  | [ n; "0"; _p50; p99 ] -> { requests = float_of_string n; secs; cpu; p99 = [ float_of_string p99 /. 1000. ] }
  | _ -> failwith ("app: loadgen said " ^ line)

let () =
  I.run (fun () ->
      let burn = I.bind "bench.burn" I.Ty.float I.Ty.unit in
      let burn_computed = I.bind "bench.burn_computed" I.Ty.float I.Ty.unit in
      let fd = Lwt_unix.socket Unix.PF_INET Unix.SOCK_STREAM 0 in
      Lwt_unix.bind fd (Unix.ADDR_INET (Unix.inet_addr_loopback, 0)) >>= fun () ->
      Lwt_unix.listen fd 128;
      let addr = match Lwt_unix.getsockname fd with Unix.ADDR_INET (_, p) -> Printf.sprintf "127.0.0.1:%d" p | _ -> assert false in
      let stop, stop_now = Lwt.wait () in
      let server = Server.create ~stop ~mode:(`TCP (`Socket fd)) (Server.make ~callback:(handler ()) ()) in
      let variants =
        List.map (fun k -> (k, fun dt -> run_load addr k dt)) kinds
        @ List.concat_map
            (fun (load, burn) -> List.map (fun k -> (load ^ "/" ^ k, fun dt -> Lwt.both (run_load addr k dt) (burn dt) >|= fst)) kinds)
            [ ("loaded", burn); ("computed", burn_computed) ]
      in
      let results = Hashtbl.create 8 in
      let rounds = 3 in
      let rec round r =
        if r = rounds then Lwt.return_unit
        else
          Lwt_list.iter_s
            (fun (name, run) ->
              run (!secs /. float rounds) >|= fun s ->
              let acc = Option.value ~default:[] (Hashtbl.find_opt results name) in
              Hashtbl.replace results name (s :: acc))
            variants
          >>= fun () -> round (r + 1)
      in
      (* A short warm-up of each, not counted. *)
      Lwt_list.iter_s (fun (_, run) -> run 0.2 >|= ignore) variants >>= fun () ->
      round 0 >>= fun () ->
      let oc = open_out !out in
      let row name value unit baseline = Printf.fprintf oc "%s\t%.3f\t%s\t%s\n" name value unit baseline in
      List.iter
        (fun (name, _) ->
          let ss = Hashtbl.find results name in
          let sum f = List.fold_left (fun a s -> a +. f s) 0. ss in
          let requests = sum (fun s -> s.requests) in
          let base prefix =
            match String.split_on_char '/' name with
            | [ ("loaded" | "computed"); k ] -> Printf.sprintf "%sapp/cohttp/%s" prefix k
            | [ "pure-ocaml" ] -> "-"
            | _ -> prefix ^ "app/cohttp/pure-ocaml"
          in
          let p99 = List.fold_left max 0. (List.concat_map (fun s -> s.p99) ss) in
          row ("app/cohttp/" ^ name) (requests /. sum (fun s -> s.secs)) "req/s" (base "");
          (* Under load, the process's CPU is mostly the burners'. *)
          if List.mem name kinds then
            row ("cpu/app/cohttp/" ^ name) (sum (fun s -> s.cpu) /. requests *. 1e6) "us/req" (base "cpu/");
          row ("latency/app/cohttp/" ^ name ^ "/p99") p99 "ms" (base "latency/" |> fun b -> if b = "-" then b else b ^ "/p99"))
        variants;
      close_out oc;
      Lwt.wakeup stop_now ();
      server)
