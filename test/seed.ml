(* The seed scenario (of the Rust design this project started from): a Go
   function calls an Lwt closure F in a loop, awaiting each result, while Lwt sleeps; we count
   iterations per second. Variants, measured side by side in one run:
   - pure-lwt:  the same loop in Lwt alone (the baseline);
   - go-task:   the loop as a Go loop task on the Lwt thread;
   - goroutine: the loop in a plain goroutine, each call posted to Lwt.
   F is Lwt.pause () (every iteration crosses the event loop) or
   Lwt_unix.auto_pause 0.1 (the seed's own benchmark). Besides iterations
   per second, the CPU time of the whole process per iteration (every
   thread, Go's too), and its ratio: pure-lwt's over the variant's.

   seed.exe [--secs S] [--tsv PATH] [--gc-smoke S] [--only VARIANT/F] [--nosys] [--instr N]
   Exits 1 if a variant made no progress, F ran off the Lwt thread, or the
   bridge still holds anything after a variant stopped. *)

open Lwt.Infix
module I = Lwt_interop

let secs = ref 6.
let instr = ref 0
let nosys = ref false
let tsv = ref ""
let gc_smoke = ref 0.
let only = ref ""

let () =
  Arg.parse
    [
      ("--secs", Arg.Set_float secs, "S  seconds per variant (default 6)");
      ("--tsv", Arg.Set_string tsv, "PATH  also write the table as TSV");
      ( "--nosys",
        Arg.Set nosys,
        " run pause only, on an Lwt engine that polls for I/O once in 64 turns of the loop, so that pure \
         Lwt's pause makes no system call per iteration (auto_pause's loop turns too seldom for it)" );
      ( "--instr",
        Arg.Set_int instr,
        "N  instead, run N iterations of each of pure-lwt and go-task, for callgrind (make bench-instr)" );
      ( "--gc-smoke",
        Arg.Set_float gc_smoke,
        "S  also run go-task with Gc.full_major around every step, S seconds" );
      ("--only", Arg.Set_string only, "VARIANT/F  run only this one (for profiling)");
    ]
    (fun a -> raise (Arg.Bad a))
    "seed.exe [--secs S] [--tsv PATH] [--gc-smoke S]"

let failures = ref []
let fail fmt = Printf.ksprintf (fun s -> failures := s :: !failures) fmt
let off_thread = ref 0

type f = Pause | Auto_pause

let f_name = function Pause -> "pause" | Auto_pause -> "auto_pause"

let make_f kind count =
  let step =
    match kind with
    | Pause -> Lwt.pause
    | Auto_pause -> Lwt_unix.auto_pause 0.1
  in
  fun () ->
    incr count;
    if not (I.on_lwt_thread ()) then incr off_thread;
    step ()

let seed_ty = I.Ty.(func unit unit)
let go_task = lazy (I.bind "seed.task" seed_ty I.Ty.unit)
let go_routine = lazy (I.bind "seed.goroutine" seed_ty I.Ty.unit)

let variants =
  [
    ( "pure-lwt",
      fun f ->
        let rec loop () = f () >>= loop in
        loop () );
    ("go-task", fun f -> Lazy.force go_task f);
    ("goroutine", fun f -> Lazy.force go_routine f);
  ]

(* Waits until the bridge holds nothing, or reports what it still holds. *)
let check_released name =
  let rec wait n =
    let s = I.stats () in
    if s.roots = 0 && s.tasks = 0 && s.calls = 0 && s.jobs = 0 then Lwt.return_unit
    else if n = 0 then (
      fail "%s: after stop the bridge still holds roots=%d tasks=%d calls=%d jobs=%d"
        name s.roots s.tasks s.calls s.jobs;
      Lwt.return_unit)
    else Lwt_unix.sleep 0.01 >>= fun () -> wait (n - 1)
  in
  wait 300

(* CPU time of the whole process (every thread: Go's too), in seconds. *)
let cpu_now () =
  let t = Unix.times () in
  t.Unix.tms_utime +. t.Unix.tms_stime

(* Runs one variant for [dt] seconds; returns its iterations and the CPU
   time the process spent meanwhile. *)
let run_once name start f dt =
  let count = ref 0 in
  let c0 = cpu_now () in
  let p = start (make_f f count) in
  Lwt_unix.sleep dt >>= fun () ->
  let n = !count and cpu = cpu_now () -. c0 in
  Lwt.cancel p;
  Lwt.catch (fun () -> p >|= fun () -> ()) (fun _ -> Lwt.return_unit) >>= fun () ->
  check_released name >|= fun () -> (n, cpu)

(* Interleaves the variants over [rounds] rounds, so that a noisy moment on
   the machine does not fall on one variant alone. *)
let measure f =
  let rounds = 3 in
  let dt = !secs /. float rounds in
  let totals = Array.make (List.length variants) 0 in
  let cpus = Array.make (List.length variants) 0. in
  let rec round r =
    if r = rounds then Lwt.return_unit
    else
      Lwt_list.iteri_s
        (fun i (name, start) ->
          let name = name ^ "/" ^ f_name f in
          if !only <> "" && !only <> name then Lwt.return_unit
          else
            run_once name start f dt >|= fun (n, cpu) ->
            totals.(i) <- totals.(i) + n;
            cpus.(i) <- cpus.(i) +. cpu)
        variants
      >>= fun () -> round (r + 1)
  in
  round 0 >|= fun () ->
  List.mapi
    (fun i (name, _) -> (name, (float totals.(i) /. !secs, cpus.(i) /. float (max 1 totals.(i)) *. 1e9)))
    variants

external callgrind_zero : unit -> unit = "lwt_callgrind_zero"
external callgrind_dump : string -> unit = "lwt_callgrind_dump"

(* Runs [n] iterations of variant [name], callgrind's counts zeroed at the
   first and dumped after the last, labelled "NAME N". *)
let instr_run n name start f =
  let count = ref 0 in
  let stop, stopper = Lwt.wait () in
  let step = make_f f count in
  let g () =
    if !count = 0 then callgrind_zero ();
    if !count = n then (
      callgrind_dump (Printf.sprintf "%s %d" name n);
      Lwt.wakeup_later stopper ());
    step ()
  in
  let p = start g in
  stop >>= fun () ->
  Lwt.cancel p;
  Lwt.catch (fun () -> p) (fun _ -> Lwt.return_unit) >>= fun () -> check_released name

let instr_all n =
  Lwt_list.iter_s
    (fun f ->
      Lwt_list.iter_s
        (fun (v, start) -> instr_run n (Printf.sprintf "seed/%s/%s" (f_name f) v) start f)
        (List.filter (fun (v, _) -> v <> "goroutine") variants))
    [ Pause; Auto_pause ]

let gc_smoke_run dt =
  let count = ref 0 in
  let f () =
    incr count;
    Gc.full_major ();
    Lwt.pause () >|= fun () -> Gc.full_major ()
  in
  let p = Lazy.force go_task f in
  Lwt_unix.sleep dt >>= fun () ->
  Lwt.cancel p;
  Lwt.catch (fun () -> p) (fun _ -> Lwt.return_unit) >>= fun () ->
  check_released "gc-smoke" >|= fun () -> !count

(* Lwt's select engine, polling once in 64 turns of the loop that do not
   block: pure Lwt's pause loop then makes (almost) no system call, and
   what a system call costs this week weighs on no variant. *)
class nosys_engine =
  object
    inherit Lwt_engine.select as super
    val mutable turns = 0

    method! iter block =
      turns <- turns + 1;
      if block || turns land 63 = 0 then super#iter block
  end

let () =
  if !nosys then Lwt_engine.set (new nosys_engine);
  I.init ();
  if !instr > 0 then (
    Lwt_main.run (instr_all !instr);
    I.shutdown ();
    exit 0);
  let rows =
    Lwt_main.run
      (Lwt_list.map_s
         (fun f -> measure f >|= fun r -> (f, r))
         (if !nosys then [ Pause ] else [ Pause; Auto_pause ]))
  in
  let smoke =
    if !gc_smoke > 0. then Some (Lwt_main.run (gc_smoke_run !gc_smoke)) else None
  in
  I.shutdown ();
  let table =
    List.concat_map
      (fun (f, r) ->
        let base = List.assoc "pure-lwt" r in
        List.filter_map
          (fun (v, (ips, cpu)) ->
            if !only <> "" && !only <> v ^ "/" ^ f_name f then None
            else Some (v, f_name f, ips, ips /. fst base, cpu, snd base /. cpu))
          r)
      rows
  in
  Printf.printf "%-10s %-11s %14s %8s %14s %10s\n" "variant" "F" "iter/s" "ratio" "CPU ns/iter" "CPU ratio";
  List.iter
    (fun (v, f, ips, ratio, cpu, cpu_ratio) ->
      Printf.printf "%-10s %-11s %14.0f %8.3f %14.0f %10.3f\n" v f ips ratio cpu cpu_ratio;
      if ips <= 0. then fail "%s/%s made no progress" v f)
    table;
  (match smoke with
  | Some n ->
      Printf.printf "gc-smoke: go-task with Gc.full_major around every step: %d iterations in %.1fs\n" n !gc_smoke;
      if n = 0 then fail "gc-smoke made no progress"
  | None -> ());
  if !tsv <> "" then (
    let oc = open_out !tsv in
    List.iter
      (fun (v, f, ips, ratio, cpu, _) -> Printf.fprintf oc "%s\t%s\t%.0f\t%.4f\t%.1f\n" v f ips ratio cpu)
      table;
    close_out oc);
  if !off_thread > 0 then fail "F ran off the Lwt thread %d times" !off_thread;
  match !failures with
  | [] -> ()
  | l ->
      List.iter (prerr_endline) (List.rev l);
      exit 1
