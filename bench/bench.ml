(* make bench: the bridge's figures, each measured in the same run as its
   baseline. The variants of a group are interleaved in rounds (the order
   reversed every other round), so that a noisy moment on a shared machine
   falls on all of them, and a rate is the sum of operations over the sum of
   seconds. Every variant first runs briefly, unmeasured, to warm up.

   bench.exe [--secs S] [--seed SEED_EXE] [--tsv PATH] [--only GROUP]

   Prints a table: figure, value, unit, baseline, ratio to the baseline, and
   the target if any, met or missed. With --tsv, also writes one line per
   figure, no header: name, value, unit, baseline name, ratio ("-" for
   those two when there is no baseline), target and "met" or "missed" ("-"
   when there is none); `make benchmarks` writes BENCHMARKS.md's table from
   it. Targets are reported, never asserted: the exit status is 0 unless a
   measurement failed. *)

open Lwt.Infix
module I = Lwt_interop

let secs = ref 3.
let instr = ref 0
let seed_exe = ref ""
let app_exe = ref ""
let tsv = ref ""
let only = ref ""

let () =
  Arg.parse
    [
      ("--secs", Arg.Set_float secs, "S  seconds per variant (default 3)");
      ("--seed", Arg.Set_string seed_exe, "SEED_EXE  run the seed scenario with this seed.exe");
      ("--app", Arg.Set_string app_exe, "APP_EXE  run the app group with this app.exe (loadgen.exe beside it)");
      ("--tsv", Arg.Set_string tsv, "PATH  also write the figures as TSV");
      ("--instr", Arg.Set_int instr, "N  instead, run N calls of each instr/ figure, for callgrind (make bench-instr)");
      ( "--only",
        Arg.Set_string only,
        "GROUP  run one group: seed, ocaml-to-go, go-to-ocaml, values, stream, raw, mem, latency, app" );
    ]
    (fun a -> raise (Arg.Bad a))
    "bench.exe [--secs S] [--seed SEED_EXE] [--app APP_EXE] [--tsv PATH] [--only GROUP]"

let wants group = !only = "" || !only = group

external now : unit -> (float[@unboxed]) = "bench_now_byte" "bench_now" [@@noalloc]
(** A monotonic clock, in seconds. *)

external cgo_callback : int -> int = "bench_cgo_callback"
(** Calls an empty Go function (bench/gomain's benchAdd1) through C. *)

external pingpong : float -> int * float = "bench_pingpong"
(** [pingpong s]: eventfd round trips between two C threads for [s]
    seconds; returns the round trips and the seconds they took. *)

(* ---- Figures ------------------------------------------------------------ *)

type target =
  | Ratio_at_least of float  (** the value over the baseline's *)
  | Ratio_at_most of float
  | At_most of float
  | Zero

type figure = {
  name : string;
  value : float;
  unit : string;
  baseline : string option;
  target : target option;
}

let figures = ref []

let add ?baseline ?target name unit value =
  figures := { name; value; unit; baseline; target } :: !figures

(* ---- Measuring ---------------------------------------------------------- *)

(* What one run did: [ops] operations in [secs] seconds, for [cpu] seconds
   of the process's CPU time (every thread: Go's too). *)
type sample = { ops : float; secs : float; cpu : float }

let plus a b = { ops = a.ops +. b.ops; secs = a.secs +. b.secs; cpu = a.cpu +. b.cpu }
let sum samples = List.fold_left plus { ops = 0.; secs = 0.; cpu = 0. } samples
let cpu_now () =
  let t = Unix.times () in
  t.Unix.tms_utime +. t.Unix.tms_stime

let per_sec s = s.ops /. s.secs
let ns_per_op s = s.secs /. s.ops *. 1e9
let cpu_ns_per_op s = s.cpu /. s.ops *. 1e9

(* [run], its sample with the CPU time the process spent meanwhile. *)
let timed run dt =
  let c0 = cpu_now () in
  run dt >|= fun s -> { s with cpu = cpu_now () -. c0 }

(* A rate figure (ops per second) and its CPU figure: cpu/NAME, the CPU
   time of the process per operation, against cpu/BASELINE. *)
let add_rate ?baseline ?target name unit s =
  add ?baseline ?target name unit (per_sec s);
  add ?baseline:(Option.map (fun b -> "cpu/" ^ b) baseline) ("cpu/" ^ name) "ns/op" (cpu_ns_per_op s)

let rounds = 3

(* Runs each variant [dt /. rounds] seconds per round, for [rounds] rounds,
   after a warm-up run; returns each variant's results, by name, in the
   order of [variants]. *)
let interleave dt variants =
  let acc = List.map (fun (name, run) -> (name, run, ref [])) variants in
  Lwt_list.iter_s (fun (_, run, _) -> run (min 0.2 (dt /. 10.)) >|= ignore) acc
  >>= fun () ->
  let rec round r =
    if r = rounds then Lwt.return_unit
    else
      Lwt_list.iter_s
        (fun (_, run, results) ->
          run (dt /. float rounds) >|= fun x -> results := x :: !results)
        (if r mod 2 = 0 then acc else List.rev acc)
      >>= fun () -> round (r + 1)
  in
  round 0 >|= fun () -> List.map (fun (name, _, results) -> (name, !results)) acc

(* Calls [call] in sequence for [dt] seconds. Every 64 calls it reads the
   clock and lets the Lwt loop turn (calls that return a resolved promise
   never would), as a program would, so that the work the calls left to the
   loop is done, and timed, in the run. *)
let seq call dt =
  let t0 = now () in
  let rec loop n =
    (if n land 63 = 0 then Lwt.pause () else Lwt.return_unit) >>= fun () ->
    if n land 63 = 0 && now () >= t0 +. dt then Lwt.return { ops = float n; secs = now () -. t0; cpu = 0. }
    else call n >>= fun _ -> loop (n + 1)
  in
  loop 0

(* [k] loops calling [call] in sequence, together, for [dt] seconds: [k]
   calls in flight. *)
let in_flight k call dt =
  let t0 = now () in
  let calls = ref 0 in
  let rec loop () =
    if now () >= t0 +. dt then Lwt.return_unit
    else
      call 0 >>= fun _ ->
      incr calls;
      loop ()
  in
  Lwt.join (List.init k (fun _ -> loop ())) >|= fun () ->
  { ops = float !calls; secs = now () -. t0; cpu = 0. }

(* The bridge starts here: the binds below need it. *)
let () = I.init ()

let run_for = I.bind_sync "bench.run_for" I.Ty.float I.Ty.unit

(* Parses what a Go measuring function returns (bench/gomain): the run and
   the Go allocations made meanwhile. *)
let go_result r =
  Scanf.sscanf r "%f %f %f" (fun ops ns mallocs -> ({ ops; secs = ns *. 1e-9; cpu = 0. }, mallocs))

(* Runs the Go measuring function [fn] on [arg] for [dt] seconds. *)
let in_go fn arg dt =
  run_for dt;
  fn arg >|= go_result

(* The same for a sync Go measuring function. *)
let in_go_sync fn dt =
  run_for dt;
  Lwt.return (go_result (fn ()))

(* The longest a loop task or sync function measuring in Go holds the Lwt
   thread at once: the library reports one that holds it for over 100 ms,
   as it would a task or sync function blocking the Lwt loop. *)
let slice = 0.02

(* Runs the Go measurement [run] for [dt] seconds in all, in runs of at
   most [slice] seconds with a turn of the Lwt loop in between; returns
   their sum. *)
let sliced run dt =
  let rec loop acc =
    if acc.secs >= dt then Lwt.return acc
    else
      Lwt.pause () >>= fun () ->
      run (min slice (dt -. acc.secs)) >>= fun (s, _) -> loop (plus acc s)
  in
  loop { ops = 0.; secs = 0.; cpu = 0. }

(* ---- Seed scenario ------------------------------------------------------ *)

(* test/seed.exe, as make demo runs it but in its own process, folded in:
   seed/F/VARIANT in iterations per second, each against pure-lwt with the
   same F. With nosys, seed-nosys/pause/VARIANT: the same on an engine that
   polls for I/O once in 64 turns (seed.exe --nosys), where pure Lwt makes
   no system call per iteration: what is left over pure Lwt is the
   bridge's own cost. *)
(* Runs [exe] with [args] and [--tsv FILE], its output to /dev/null, and
   returns the rows of FILE, split on tabs. *)
let tsv_rows exe args =
  let out = Filename.temp_file "bench" ".tsv" in
  Fun.protect
    ~finally:(fun () -> Sys.remove out)
    (fun () ->
      let devnull = Unix.openfile "/dev/null" [ Unix.O_WRONLY ] 0 in
      let pid =
        Fun.protect
          ~finally:(fun () -> Unix.close devnull)
          (fun () -> Unix.create_process exe (Array.of_list ((exe :: args) @ [ "--tsv"; out ])) Unix.stdin devnull Unix.stderr)
      in
      (match Unix.waitpid [] pid with _, Unix.WEXITED 0 -> () | _ -> failwith (exe ^ " failed"));
      let ic = open_in out in
      let rec rows acc =
        match input_line ic with
        | line -> rows (String.split_on_char '\t' line :: acc)
        | exception End_of_file ->
            close_in ic;
            List.rev acc
      in
      rows [])

let seed ?(nosys = false) () =
  let args = [ "--secs"; Printf.sprintf "%g" !secs ] @ if nosys then [ "--nosys" ] else [] in
  List.iter
    (function
      | [ variant; f; ips; _ratio; cpu ] ->
          let group = if nosys then "seed-nosys" else "seed" in
          let name = Printf.sprintf "%s/%s/%s" group f variant in
          let baseline = if variant = "pure-lwt" then None else Some (Printf.sprintf "%s/%s/pure-lwt" group f) in
          let target, cpu_target =
            (* CPU-time ratios (pure Lwt's CPU per iteration over the
               variant's) of 0.6 and 0.4: the variant's at most 1/0.6 and
               1/0.4 times pure Lwt's. *)
            match (nosys, f, variant) with
            | false, "pause", "go-task" -> (Some (Ratio_at_least 0.6), Some (Ratio_at_most (1. /. 0.6)))
            | false, "auto_pause", "go-task" -> (Some (Ratio_at_least 0.35), Some (Ratio_at_most (1. /. 0.4)))
            | _ -> (None, None)
          in
          add ?baseline ?target name "iter/s" (float_of_string ips);
          add ?baseline:(Option.map (fun b -> "cpu/" ^ b) baseline) ?target:cpu_target ("cpu/" ^ name) "ns/iter"
            (float_of_string cpu)
      | _ -> failwith ("unexpected line in the TSV of " ^ !seed_exe))
    (tsv_rows !seed_exe args)

(* ---- An application: a cohttp server (bench/app.ml) -------------------- *)

let app () =
  let loadgen = Filename.concat (Filename.dirname !app_exe) "loadgen.exe" in
  List.iter
    (function
      | [ name; value; unit; baseline ] ->
          add ?baseline:(if baseline = "-" then None else Some baseline) name unit (float_of_string value)
      | _ -> failwith ("unexpected line in the TSV of " ^ !app_exe))
    (tsv_rows !app_exe [ "--secs"; Printf.sprintf "%g" !secs; "--loadgen"; loadgen ])

(* ---- OCaml calls Go ----------------------------------------------------- *)

(* Round trips of an int, the call's promise awaited: Go echoes it from a
   new goroutine per call, from a loop task, or from a sync function bound
   with bind (its promise is settled at once). The baselines hand the same
   echo to Lwt_preemptive's thread pool. *)
let echo_goroutine = I.bind "bench.echo.goroutine" I.Ty.int I.Ty.int
let echo_task = I.bind "bench.echo.task" I.Ty.int I.Ty.int
let echo_sync = I.bind "bench.echo.sync" I.Ty.int I.Ty.int
let detach x = Lwt_preemptive.detach (fun x -> x) x

let ocaml_to_go () =
  interleave !secs
    [
      ("baseline/detach/seq", timed (seq detach));
      ("ocaml-to-go/goroutine/seq", timed (seq echo_goroutine));
      ("ocaml-to-go/task/seq", timed (seq echo_task));
      ("ocaml-to-go/sync/seq", timed (seq echo_sync));
      ("baseline/detach/1000", timed (in_flight 1000 detach));
      ("ocaml-to-go/goroutine/1000", timed (in_flight 1000 echo_goroutine));
    ]
  >|= List.iter (fun (name, samples) ->
          let baseline, target =
            match name with
            | "ocaml-to-go/goroutine/seq" -> (Some "baseline/detach/seq", Some (Ratio_at_least 1.))
            | "ocaml-to-go/goroutine/1000" ->
                (Some "baseline/detach/1000", Some (Ratio_at_least 10.))
            | "ocaml-to-go/task/seq" | "ocaml-to-go/sync/seq" -> (Some "baseline/detach/seq", None)
            | _ -> (None, None)
          in
          add_rate ?baseline ?target name "calls/s" (sum samples))

(* ---- Go calls OCaml ----------------------------------------------------- *)

(* Go calls an OCaml int -> int Lwt.t whose promise is already resolved and
   waits for the result (Func.Call): in a loop from one goroutine, from
   1,000 goroutines at once, or from a loop task (in slices, see [sliced]).
   The baseline: a systhread of Lwt_preemptive's pool calling it through
   Lwt_preemptive.run_in_main, which also waits for the promise. *)
let call_int = I.Ty.(func int int)
let call_task = I.bind "bench.call.task" call_int I.Ty.string
let call_goroutine = I.bind "bench.call.goroutine" call_int I.Ty.string
let call_goroutines = I.bind "bench.call.goroutines" call_int I.Ty.string
let inc x = Lwt.return (x + 1)

let run_in_main f dt =
  Lwt_preemptive.detach
    (fun () ->
      let t0 = now () in
      let rec loop n =
        if n land 63 = 0 && now () >= t0 +. dt then { ops = float n; secs = now () -. t0; cpu = 0. }
        else (
          ignore (Lwt_preemptive.run_in_main (fun () -> f n) : int);
          loop (n + 1))
      in
      loop 0)
    ()

let go_to_ocaml () =
  let calling fn dt = in_go fn inc dt >|= fst in
  interleave !secs
    [
      ("baseline/run_in_main/seq", timed (run_in_main inc));
      ("go-to-ocaml/goroutine/seq", timed (calling call_goroutine));
      ("go-to-ocaml/goroutine/1000", timed (calling call_goroutines));
      ("go-to-ocaml/task/seq", timed (sliced (in_go call_task inc)));
    ]
  >|= List.iter (fun (name, samples) ->
          let baseline = if name = "baseline/run_in_main/seq" then None else Some "baseline/run_in_main/seq" in
          let target =
            if name = "go-to-ocaml/goroutine/seq" then Some (Ratio_at_least 1.) else None
          in
          add_rate ?baseline ?target name "calls/s" (sum samples))

(* ---- Values -------------------------------------------------------------- *)

(* A 10-field record of ints, floats and strings crossing in one sync call
   (values/record10/...: OCaml to Go as the argument, Go to OCaml as the
   result), and a list of 1,000 of them (ns per record). Each against the
   same data declared as nested pairs, in the same run. go-allocs: Go heap
   allocations per record. *)
type record10 = {
  a : int; b : int; c : int; d : float; e : float; f : float; g : string; h : string; i : string; j : int;
}

let record10 =
  I.Ty.(
    record "record10" (fun a b c d e f g h i j -> { a; b; c; d; e; f; g; h; i; j })
    |+ field "a" int (fun r -> r.a) |+ field "b" int (fun r -> r.b) |+ field "c" int (fun r -> r.c)
    |+ field "d" float (fun r -> r.d) |+ field "e" float (fun r -> r.e) |+ field "f" float (fun r -> r.f)
    |+ field "g" string (fun r -> r.g) |+ field "h" string (fun r -> r.h) |+ field "i" string (fun r -> r.i)
    |+ field "j" int (fun r -> r.j)
    |> sealr)

let pairs10 = I.Ty.(pair int (pair int (pair int (pair float (pair float (pair float (pair string (pair string (pair string int)))))))))
let sample = { a = 1; b = -2; c = max_int; d = 0.5; e = 1e300; f = -0.; g = "gopher"; h = ""; i = "a longer string, of 40 bytes or so....."; j = 42 }
let sample_pairs r = (r.a, (r.b, (r.c, (r.d, (r.e, (r.f, (r.g, (r.h, (r.i, r.j)))))))))
let take_record = I.bind_sync "bench.take_record10" record10 I.Ty.int
let take_pairs = I.bind_sync "bench.take_pairs10" pairs10 I.Ty.int
let give_record = I.bind_sync "bench.give_record10" I.Ty.unit record10
let give_pairs = I.bind_sync "bench.give_pairs10" I.Ty.unit pairs10
let take_records = I.bind_sync "bench.take_records10" (I.Ty.list record10) I.Ty.int
let take_pairs_list = I.bind_sync "bench.take_pairs10s" (I.Ty.list pairs10) I.Ty.int
let go_mallocs = I.bind_sync "bench.mallocs" I.Ty.unit I.Ty.int
let records1000 = List.init 1000 (fun k -> { sample with a = k })
let pairs1000 = List.map sample_pairs records1000

(* Calls [f] for [dt] seconds, [per] values a call: a sample of values. *)
let tight ?(per = 1) f dt =
  let t0 = now () in
  let rec loop n =
    if n land 63 = 0 && now () >= t0 +. dt then { ops = float (n * per); secs = now () -. t0; cpu = 0. }
    else (
      f ();
      loop (n + 1))
  in
  Lwt.pause () >|= fun () -> loop 0

let values () =
  let variants =
    [
      ("values/record10/ocaml-to-go", 1, fun () -> ignore (take_record sample : int));
      ("values/pairs10/ocaml-to-go", 1, fun () -> ignore (take_pairs (sample_pairs sample) : int));
      ("values/record10/go-to-ocaml", 1, fun () -> ignore (give_record () : record10));
      ("values/pairs10/go-to-ocaml", 1, fun () -> ignore (give_pairs () : _ * _));
      ("values/records1000/ocaml-to-go", 1000, fun () -> ignore (take_records records1000 : int));
      ("values/pairs1000/ocaml-to-go", 1000, fun () -> ignore (take_pairs_list pairs1000 : int));
    ]
  in
  interleave !secs (List.map (fun (name, per, f) -> (name, timed (tight ~per f))) variants) >|= fun results ->
  List.iter
    (fun (name, per, f) ->
      let baseline =
        match String.split_on_char '/' name with
        | [ _; ("record10" | "records1000") as r; dir ] ->
            Some (Printf.sprintf "values/%s/%s" (if r = "record10" then "pairs10" else "pairs1000") dir)
        | _ -> None
      in
      let s = sum (List.assoc name results) in
      add ?baseline name "ns/value" (ns_per_op s);
      add ?baseline:(Option.map (fun b -> "cpu/" ^ b) baseline) ("cpu/" ^ name) "ns/value" (cpu_ns_per_op s);
      let calls = 2000 / per in
      let m0 = go_mallocs () in
      for _ = 1 to calls do f () done;
      let allocs = float (go_mallocs () - m0) /. float (calls * per) in
      add ("mem/go-allocs-per-value/" ^ String.concat "/" (List.tl (String.split_on_char '/' name))) "allocs" allocs)
    variants

(* ---- Streams ------------------------------------------------------------ *)

(* 4 KiB chunks each way (stream/...: chunks/s, and mib/stream/... in MiB/s),
   against the same chunks as one call each, awaited in turn
   (baseline/chunk-call/...); a goroutine reads or writes them in Go:
   - ocaml-to-go: an Lwt_stream.from_direct of the chunks, which Go reads;
     its baseline calls a goroutine function with each chunk;
   - go-to-ocaml: a Go producer (lwt.StreamOf) that OCaml reads with
     Lwt_stream.next; its baseline calls a goroutine function returning a
     chunk. *)
let chunk = String.make 4096 'x'
let stream_read = I.bind "bench.stream.read" I.Ty.(stream string) I.Ty.int
let take_chunk = I.bind "bench.stream.take_chunk" I.Ty.string I.Ty.int
let stream_write = I.bind "bench.stream.write" I.Ty.unit I.Ty.(stream string)
let give_chunk = I.bind "bench.stream.give_chunk" I.Ty.unit I.Ty.string

(* [next n] gets the n-th chunk, for [dt] seconds: a sample of chunks. *)
let chunks next dt =
  let t0 = now () in
  let rec loop n =
    if n land 63 = 0 && now () >= t0 +. dt then Lwt.return { ops = float n; secs = now () -. t0; cpu = 0. }
    else next () >>= fun len -> if len <> 4096 then failwith "bench: a chunk went wrong" else loop (n + 1)
  in
  loop 0

let stream_to_go dt =
  let t0 = now () and n = ref 0 in
  let s =
    Lwt_stream.from_direct (fun () ->
        if !n land 63 = 0 && now () >= t0 +. dt then None
        else (
          incr n;
          Some chunk))
  in
  stream_read s >|= fun bytes ->
  if bytes <> !n * 4096 then failwith "bench: Go read other chunks";
  { ops = float !n; secs = now () -. t0; cpu = 0. }

let stream_from_go dt =
  stream_write () >>= fun s -> chunks (fun () -> Lwt_stream.next s >|= String.length) dt

let streams () =
  let variants =
    [
      ("baseline/chunk-call/ocaml-to-go", fun dt -> chunks (fun () -> take_chunk chunk) dt);
      ("stream/ocaml-to-go", stream_to_go);
      ("baseline/chunk-call/go-to-ocaml", fun dt -> chunks (fun () -> give_chunk () >|= String.length) dt);
      ("stream/go-to-ocaml", stream_from_go);
    ]
  in
  interleave !secs (List.map (fun (name, run) -> (name, timed run)) variants) >|= fun results ->
  List.iter
    (fun (name, _) ->
      let s = sum (List.assoc name results) in
      let baseline =
        match String.split_on_char '/' name with
        | [ "stream"; dir ] -> Some ("baseline/chunk-call/" ^ dir)
        | _ -> None
      in
      add_rate ?baseline name "chunks/s" s;
      add ?baseline:(Option.map (fun b -> "mib/" ^ b) baseline) ("mib/" ^ name) "MiB/s" (per_sec s *. 4096. /. 1048576.))
    variants

(* ---- Raw costs and the physical limit ----------------------------------- *)

(* - raw/ocaml-to-go-sync-call: OCaml calls a sync Go int -> int (bind_sync),
     in a tight loop. Its baseline, baseline/cgo-callback: the same through
     an external that calls an exported Go function doing nothing else, the
     least a call from OCaml into Go costs.
   - raw/go-to-ocaml-call: a loop task calls an OCaml unit -> unit Lwt.t that
     returns Lwt.return_unit, with Func.Call (no suspension). Its baseline,
     baseline/cgo-call: a call from Go into an empty C function, on the Lwt
     thread, the least a call from Go into OCaml costs.
   - raw/coroutine-switch: one switch between a runtime coroutine (iter.Pull,
     what loop tasks are) and its caller, on the Lwt thread in a call from
     OCaml, as the library's are.
   - raw/notifier-wake: the two system calls of a wake of the library's
     eventfd notifier (the poster's write, the Lwt thread's drain), on a
     private eventfd: the notifier itself is not exported. The wake-up of a
     sleeping thread is left out; limit/eventfd-pingpong has it.
   - limit/eventfd-pingpong: a round trip between two C threads, each
     blocking in read on its eventfd until the other writes: two wake-ups of
     a sleeping thread, what any hop from one thread to another and back
     costs at the least.
   The loop task and the sync functions that measure in Go run in slices
   (see [sliced]). *)
let add1 = I.bind_sync "bench.add1" I.Ty.int I.Ty.int
let call_unit_task = I.bind "bench.call_unit.task" I.Ty.(func unit unit) I.Ty.string

let call_unit_goroutine =
  I.bind "bench.call_unit.goroutine" I.Ty.(func unit unit) I.Ty.string

let cgo_call = I.bind_sync "bench.cgo_call" I.Ty.unit I.Ty.string
let coroutine_switch = I.bind_sync "bench.coroutine_switch" I.Ty.unit I.Ty.string
let notifier_wake = I.bind_sync "bench.notifier_wake" I.Ty.unit I.Ty.string

(* Calls [f] in a tight loop for [dt] seconds. *)
let sync_calls f dt =
  let t0 = now () in
  let rec loop n x =
    if n land 1023 = 0 && now () >= t0 +. dt then { ops = float n; secs = now () -. t0; cpu = 0. }
    else loop (n + 1) (f x)
  in
  Lwt.return (loop 0 0)

let raw () =
  interleave !secs
    [
      ("baseline/cgo-callback", sync_calls cgo_callback);
      ("raw/ocaml-to-go-sync-call", sync_calls add1);
      ("baseline/cgo-call", sliced (in_go_sync cgo_call));
      ("raw/go-to-ocaml-call", sliced (in_go call_unit_task (fun () -> Lwt.return_unit)));
      ("raw/coroutine-switch", sliced (in_go_sync coroutine_switch));
      ("raw/notifier-wake", sliced (in_go_sync notifier_wake));
      ( "limit/eventfd-pingpong",
        fun dt ->
          let n, s = pingpong dt in
          Lwt.return { ops = float n; secs = s; cpu = 0. } );
    ]
  >|= List.iter (fun (name, samples) ->
          let baseline, target =
            match name with
            | "raw/ocaml-to-go-sync-call" -> (Some "baseline/cgo-callback", Some (At_most 150.))
            | "raw/go-to-ocaml-call" -> (Some "baseline/cgo-call", None)
            | _ -> (None, None)
          in
          add ?baseline ?target name "ns" (ns_per_op (sum samples)))

(* ---- Memory ------------------------------------------------------------- *)

(* The seed's round trip: Go calls Lwt.pause, whose promise is pending, and
   waits for it to resolve on the next turn of the Lwt loop; from a loop task
   and from a goroutine, after the warm-up.
   - mem/go-allocs-per-rt/*: Go heap allocations (runtime.MemStats.Mallocs)
     per round trip, the Go loop's first call left out. Mallocs counts the
     whole process, so other goroutines' allocations (a cleanup of an earlier
     run's Func, for one) may add a few over all the rounds: the task's
     target, 0, is met when the figure rounds to 0.000, fewer than one in
     2,000 round trips, which no allocation made by round trips can be.
   - mem/ocaml-words-per-rt/task: Gc.minor_words per round trip, the Lwt
     loop's own turn and Lwt.pause's promise included. Its baseline,
     baseline/ocaml-words-per-rt/pure-lwt: the same per iteration of an Lwt
     loop calling Lwt.pause.
   - mem/rss-growth-per-1M-rt: the growth of the resident set over at least
     1,000,000 more round trips from a task, scaled to 1,000,000. *)
let rss_kib () =
  let ic = open_in "/proc/self/status" in
  let rec find () =
    let line = input_line ic in
    if String.length line > 6 && String.sub line 0 6 = "VmRSS:" then
      Scanf.sscanf line "VmRSS: %d kB" Fun.id
    else find ()
  in
  Fun.protect ~finally:(fun () -> close_in ic) find

(* Lwt.pause in an Lwt loop for [dt] seconds. The clock is read without
   allocating and the loop closes over no counter: the loop allocates what
   Lwt does and nothing more. *)
let pauses dt =
  let t0 = now () in
  let n = ref 0 in
  let rec loop () =
    if now () >= t0 +. dt then Lwt.return_unit
    else (
      incr n;
      Lwt.pause () >>= loop)
  in
  loop () >|= fun () -> { ops = float !n; secs = now () -. t0; cpu = 0. }

let mem () =
  (* A run gives its Go allocations (none for pure-lwt, which runs no Go);
     this adds the OCaml words it allocated. *)
  let counted run dt =
    let w0 = Gc.minor_words () in
    run dt >|= fun (s, mallocs) -> (s, mallocs, Gc.minor_words () -. w0)
  in
  interleave !secs
    [
      ("pure-lwt", counted (fun dt -> pauses dt >|= fun s -> (s, 0.)));
      ("task", counted (in_go call_unit_task Lwt.pause));
      ("goroutine", counted (in_go call_unit_goroutine Lwt.pause));
    ]
  >>= fun results ->
  let per_rt name get =
    let l = List.assoc name results in
    List.fold_left (fun a x -> a +. get x) 0. l
    /. List.fold_left (fun a (s, _, _) -> a +. s.ops) 0. l
  in
  let mallocs (_, m, _) = m and words (_, _, w) = w in
  add ~target:Zero "mem/go-allocs-per-rt/task" "allocs/rt" (per_rt "task" mallocs);
  add "mem/go-allocs-per-rt/goroutine" "allocs/rt" (per_rt "goroutine" mallocs);
  add "baseline/ocaml-words-per-rt/pure-lwt" "words/rt" (per_rt "pure-lwt" words);
  add ~baseline:"baseline/ocaml-words-per-rt/pure-lwt" "mem/ocaml-words-per-rt/task" "words/rt"
    (per_rt "task" words);
  let rss0 = rss_kib () in
  let rec run total =
    if total >= 1e6 then Lwt.return total
    else in_go call_unit_task Lwt.pause 0.5 >>= fun (s, _) -> run (total +. s.ops)
  in
  run 0. >|= fun total ->
  add "mem/rss-growth-per-1M-rt" "MiB" (float (rss_kib () - rss0) /. 1024. *. 1e6 /. total)

(* ---- Latency ------------------------------------------------------------ *)

(* How late a 1 ms Lwt_unix.sleep in a loop ends, each tick followed by a
   sync Go call (add1), as a program using the bridge would make: idle, and
   while goroutines keep every Go P busy computing (go-saturated), the same
   calling runtime.Gosched() every ~50 us (-yielding), or each in
   lwt.Compute, which leaves one P free (-computed). app/cohttp/* has the
   same for a server's requests. *)
let burn = I.bind "bench.burn" I.Ty.float I.Ty.unit
let burn_yielding = I.bind "bench.burn_yielding" I.Ty.float I.Ty.unit
let burn_computed = I.bind "bench.burn_computed" I.Ty.float I.Ty.unit
let tick = 0.001

let ticks dt =
  let t0 = now () in
  let late = ref [] in
  let rec loop () =
    if now () >= t0 +. dt then Lwt.return (Array.of_list !late)
    else
      let due = now () +. tick in
      Lwt_unix.sleep tick >>= fun () ->
      ignore (add1 0 : int);
      late := (now () -. due) :: !late;
      loop ()
  in
  loop ()

let latency () =
  let with_burn burn dt = Lwt.both (burn dt) (ticks dt) >|= snd in
  interleave !secs
    [
      ("idle", ticks);
      ("go-saturated", with_burn burn);
      ("go-saturated-yielding", with_burn burn_yielding);
      ("go-saturated-computed", with_burn burn_computed);
    ]
  >|= fun results ->
  let percentile name p =
    let a = Array.concat (List.assoc name results) in
    Array.sort compare a;
    a.(min (Array.length a - 1) (Array.length a * p / 100)) *. 1e3
  in
  add "latency/lwt-tick-p50/idle" "ms" (percentile "idle" 50);
  add "latency/lwt-tick-p99/idle" "ms" (percentile "idle" 99);
  List.iter
    (fun v ->
      add ~baseline:"latency/lwt-tick-p99/idle" ("latency/lwt-tick-p99/" ^ v) "ms" (percentile v 99))
    [ "go-saturated"; "go-saturated-yielding"; "go-saturated-computed" ]

(* ---- Instruction counts (make bench-instr) ------------------------------ *)

(* Under callgrind, N calls of each call figure, the counts zeroed before
   the first and dumped after the last, labelled "instr/NAME N". *)
external callgrind_zero : unit -> unit = "lwt_callgrind_zero"
external callgrind_dump : string -> unit = "lwt_callgrind_dump"

let instr_calls n =
  let label name = Printf.sprintf "%s %d" name n in
  let ocaml_to_go name call =
    (* As [seq]: a turn of the Lwt loop every 64 calls. *)
    let rec loop i =
      if i = n then Lwt.return (callgrind_dump (label name))
      else
        (if i land 63 = 0 then Lwt.pause () else Lwt.return_unit) >>= fun () ->
        call i >>= fun _ -> loop (i + 1)
    in
    callgrind_zero ();
    loop 0
  in
  callgrind_zero ();
  for i = 1 to n do
    ignore (add1 i : int)
  done;
  callgrind_dump (label "instr/raw/ocaml-to-go-sync-call");
  ocaml_to_go "instr/ocaml-to-go/task/seq" echo_task >>= fun () ->
  ocaml_to_go "instr/ocaml-to-go/sync/seq" echo_sync >>= fun () ->
  (* Go's loop task calls OCaml's inc, which counts. *)
  let calls = ref 0 in
  let inc x =
    if !calls = 0 then callgrind_zero ();
    incr calls;
    if !calls = n + 1 then callgrind_dump (label "instr/go-to-ocaml/task/seq");
    Lwt.return (x + 1)
  in
  let rec slices () = if !calls > n then Lwt.return_unit else sliced (in_go call_task inc) 0.05 >>= fun _ -> slices () in
  slices ()

(* ---- Report ------------------------------------------------------------- *)

let ratio figs f =
  match f.baseline with
  | None -> None
  | Some b -> (
      match List.find_opt (fun g -> g.name = b) figs with
      | Some g -> Some (b, f.value /. g.value)
      | None -> None)

let target_text = function
  | Ratio_at_least x -> Printf.sprintf "ratio >= %g" x
  | Ratio_at_most x -> Printf.sprintf "ratio <= %.3g" x
  | At_most x -> Printf.sprintf "<= %g" x
  | Zero -> "= 0"

let met f ratio = function
  | Ratio_at_least x -> ( match ratio with Some (_, r) -> r >= x | None -> false)
  | Ratio_at_most x -> ( match ratio with Some (_, r) -> r <= x | None -> false)
  | At_most x -> f.value <= x
  | Zero -> f.value < 0.0005 (* 0.000 in the table: see mem *)

let value_text v =
  if Float.abs v >= 100. then Printf.sprintf "%.0f" v
  else if Float.abs v >= 1. then Printf.sprintf "%.2f" v
  else Printf.sprintf "%.3f" v

let report figs =
  let width get = List.fold_left (fun w f -> max w (String.length (get f))) 8 figs in
  let wn = width (fun f -> f.name)
  and wu = width (fun f -> f.unit)
  and wb = width (fun f -> Option.value f.baseline ~default:"") in
  let row name value unit baseline ratio target =
    Printf.printf "%-*s %12s %-*s %-*s %7s  %s\n" wn name value wu unit wb baseline ratio target
  in
  row "figure" "value" "unit" "baseline" "ratio" "target";
  List.iter
    (fun f ->
      let r = ratio figs f in
      let target =
        match f.target with
        | None -> ""
        | Some t -> target_text t ^ if met f r t then "  met" else "  MISSED"
      in
      row f.name (value_text f.value) f.unit
        (match r with Some (b, _) -> b | None -> "-")
        (match r with Some (_, x) -> Printf.sprintf "%.3f" x | None -> "-")
        target)
    figs;
  if !tsv <> "" then (
    let oc = open_out !tsv in
    List.iter
      (fun f ->
        let rt = ratio figs f in
        let b, r = match rt with Some (b, x) -> (b, Printf.sprintf "%.4f" x) | None -> ("-", "-") in
        let t, m =
          match f.target with
          | Some t -> (target_text t, if met f rt t then "met" else "missed")
          | None -> ("-", "-")
        in
        Printf.fprintf oc "%s\t%.3f\t%s\t%s\t%s\t%s\t%s\n" f.name f.value f.unit b r t m)
      figs;
    close_out oc)

let groups =
  [
    ("ocaml-to-go", ocaml_to_go);
    ("go-to-ocaml", go_to_ocaml);
    ("values", values);
    ("stream", streams);
    ("raw", raw);
    ("mem", mem);
    ("latency", latency);
  ]

let () =
  if !instr > 0 then (
    Lwt_main.run (instr_calls !instr);
    I.shutdown ();
    exit 0);
  let t0 = now () in
  if wants "seed" then
    if !seed_exe = "" then prerr_endline "bench: seed skipped (no --seed)"
    else (
      prerr_endline "bench: seed";
      seed ();
      prerr_endline "bench: seed-nosys";
      seed ~nosys:true ());
  if wants "app" then
    if !app_exe = "" then prerr_endline "bench: app skipped (no --app)"
    else if not (Sys.file_exists !app_exe) then
      prerr_endline ("bench: app skipped: no " ^ !app_exe ^ " (it needs cohttp-lwt-unix: make bench installs it)")
    else (
      prerr_endline "bench: app";
      app ());
  Lwt_main.run
    (Lwt_list.iter_s
       (fun (name, run) ->
         if wants name then (
           prerr_endline ("bench: " ^ name);
           run ())
         else Lwt.return_unit)
       groups);
  I.shutdown ();
  report (List.rev !figures);
  Printf.printf "(%.0f s, %g s per variant in %d rounds)\n" (now () -. t0) !secs rounds
