(** Go and OCaml/Lwt in one process, each awaiting the other.

    The program links a Go archive built from a Go [main] package that
    imports the [lwt] Go package and registers Go functions. {!init} starts
    the bridge on the thread running [Lwt_main.run] (the {e Lwt thread});
    from then on Go code runs beside the Lwt event loop, woken through a
    file descriptor that Lwt watches.

    Threads: each value below says where it may be used. "Lwt thread" means
    the thread that called {!init}, between {!init} and {!shutdown}; used
    elsewhere, such a function raises [Failure] naming itself (or, for a
    bound Go function, returns a promise rejected with it). [Ty] and
    [Opaque] are plain values, usable anywhere. [Lwt.cancel] of a Go call's
    promise works from any thread. An OCaml promise that Go awaits must be
    settled on the Lwt thread: settled elsewhere, Go's call fails with an
    error saying so. In a child process made by [Unix.fork] (without exec)
    Go's runtime is gone: every function raises [Failure] naming fork, but
    {!stats} (all zero) and {!shutdown} (which returns). [Lwt_main.run]
    inside OCaml code that Go called raises [Failure] (Go's work runs only
    in the outermost entry). The callbacks of promises that Go settles run
    once Go has returned to OCaml. *)

exception Go_error of {
  message : string;
      (** the Go error's [Error()] text, or ["panic: "] and the panic value *)
  go_type : string;  (** the Go error's type, e.g. ["*fs.PathError"] (Go's [%T]) *)
  stack : string;  (** a panic's Go stack; [""] for an error *)
}
(** A Go function returned an error, or panicked, or called
    [runtime.Goexit] in a goroutine, or returned a value too large for
    OCaml's heap (the message names [Out_of_memory]), or Go refused the
    call. A [Go_error] raised back to Go reaches it with its message and
    type unchanged, so that an error crossing back and forth never grows.
    Go errors that [errors.Is] an error registered with
    [lwt.RegisterError] are raised as the exception {!register_exception}
    names instead, Go's [context.Canceled] as [Lwt.Canceled], and the
    bridge's [ErrClosed] as {!Closed}. *)

exception Closed
(** The bridge was shut down (or was not started): a call to Go after
    {!shutdown}, a call in flight that shutdown rejected. In Go, this
    exception [errors.Is] [lwt.ErrClosed]. *)

val register_exception : string -> exn -> unit
(** [register_exception name e] maps [e] to the Go error registered under
    [name] with [lwt.RegisterError], both ways: that Go error reaches
    OCaml as [e] (raised as it is), and [e], or any exception of its
    constructor, reaches Go as an [*lwt.OCamlError] that [errors.Is] the
    Go error. Before {!init} on any thread, after it on the Lwt thread
    (like {!register}).
    @raise Invalid_argument if [name] is already registered. *)

val init : unit -> unit
(** Starts the bridge on the calling thread, which becomes the Lwt thread,
    registers its notification fd with [Lwt_engine]. Call it on the thread
    that runs [Lwt_main.run], before the functions that need the Lwt
    thread. Calling it again after {!shutdown} starts a new bridge.
    @raise Go_error if the bridge is already running, or if this library
    and the Go package are of different versions.
    @raise Failure if it already ran on another thread. *)

val shutdown : ?grace:float -> unit -> unit
(** Stops the bridge. The Go functions still running for OCaml see their
    [context.Context] cancelled, and for up to [grace] seconds (default 1)
    their results still settle their promises, while this call waits (the
    Lwt loop does not run meanwhile; OCaml's other threads and domains do).
    A function that fails with its context's error rejects its promise with
    {!Closed}, not [Lwt.Canceled]: no one cancelled it. Then the promises
    left are rejected with {!Closed}, loop tasks are stopped, Go's calls
    into OCaml fail with Go's [ErrClosed], the roots Go held are released
    and the fd is unregistered and closed. Idempotent. Go's [lwt.Shutdown]
    does the same from a goroutine. Lwt thread (does nothing if the bridge
    is not running).
    @raise Go_error if called from OCaml code that Go itself called. *)

val run : ?grace:float -> (unit -> 'a Lwt.t) -> 'a
(** [run f] is the bridge around an Lwt program: {!init}, [Lwt_main.run]
    of [f ()], then {!shutdown} (with [grace]), also when [f] raises or its
    promise is rejected (the exception is raised again, with its
    backtrace). On the thread that is to be the Lwt thread; again after it
    returns, for a new bridge.
    @raise Go_error as {!init} does, if the bridge is already running. *)

type 'a handle
(** A Go value that OCaml holds without seeing inside it ([lwt.Handle[T]]
    in Go), to pass it back to Go. The type parameter is yours, to tell
    handles apart; Go checks the value's Go type when it gets it back, and
    a mismatch is a [Go_error]. OCaml's GC frees the Go value, from any
    thread, and a handle stays valid across {!shutdown} and {!init}. Two
    handles are equal when they are the same handle. *)

(** OCaml values that Go holds without seeing inside them, to hand them
    back ([*lwt.Value] in Go). Any OCaml value crosses once injected with a
    key; only the same key projects it back. *)
module Opaque : sig
  type t

  type 'a key

  val key : unit -> 'a key
  (** A new key. Keys made by different calls never match. *)

  val inject : 'a key -> 'a -> t
  val project : 'a key -> t -> 'a option
  (** [Some x] if the value was injected with this key. *)
end

(** OCaml types as Go sees them: each value is the one declaration of a
    type, from which OCaml writes and reads its values and Go matches its
    own type when {!bind}, {!bind_sync} or Go's [Lookup] first meets it.
    A mismatch is an error there, naming both sides and where they differ
    (for example a record field with no Go field). Go's types match by
    their kind: a named Go type ([type UserID int64]) is its kind's
    ([int]); [time.Duration] is an [int] (nanoseconds); a [time.Time] does
    not cross (pass [t.UnixNano()] or a formatted string).

    [unit], [bool], [int], [char], [float], [string], [bytes], {!handle},
    {!opaque} and {!func} cross as themselves; the others are written into
    one buffer that the other side reads, in one pass each way. *)
module Ty : sig
  type 'a t

  val unit : unit t
  (** Go [struct{}]. *)

  val bool : bool t
  (** Go [bool]. *)

  val int : int t
  (** Go [int] or [int64]. A Go value outside OCaml's 63-bit range is an
      error, never a silent wrap. *)

  val char : char t
  (** Go [byte]. *)

  val int32 : int32 t
  (** Go [int32]. *)

  val int64 : int64 t
  (** Go [int64] (or [int]), all 64 bits. *)

  val float : float t
  (** Go [float64]. *)

  val string : string t
  (** Go [string], copied; any bytes. *)

  val bytes : bytes t
  (** Go [[]byte], copied. *)

  val option : 'a t -> 'a option t
  (** Go [*A]: [nil] is [None]. *)

  val list : 'a t -> 'a list t
  (** Go [[]A]; a [nil] slice is [[]]. *)

  val array : 'a t -> 'a array t
  (** Go [[]A] ([float array] too). *)

  val result : 'a t -> 'e t -> ('a, 'e) result t
  (** Go [lwt.Result[A, E]]: [Ok x] is [{Ok: x}], [Error e] is
      [{Error: e, IsError: true}]. *)

  val pair : 'a t -> 'b t -> ('a * 'b) t
  (** Go [lwt.Pair[A, B]], or any Go struct of two exported fields, in
      order. *)

  val tuple3 : 'a t -> 'b t -> 'c t -> ('a * 'b * 'c) t
  (** Go [lwt.Tuple3[A, B, C]], or any struct of three exported fields. *)

  val tuple4 : 'a t -> 'b t -> 'c t -> 'd t -> ('a * 'b * 'c * 'd) t
  (** Go [lwt.Tuple4[A, B, C, D]], or any struct of four exported
      fields. *)

  (** {2 Records}

      A record is a Go struct whose exported fields match the record's by
      name, case and underscores aside ([user_id] is [UserID]), or by an
      [lwt:"user_id"] tag; a Go field tagged [lwt:"-"] is left out. A
      field missing on either side, or of another type, is a mismatch.
{[
type user = { id : int; name : string; tags : string list }

let user =
  Ty.(record "user" (fun id name tags -> { id; name; tags })
      |+ field "id" int (fun u -> u.id)
      |+ field "name" string (fun u -> u.name)
      |+ field "tags" (list string) (fun u -> u.tags)
      |> sealr)
]}
      The function given to [record] builds the record from its fields, in
      the order of the [field]s. *)

  type ('r, 'a) field
  type ('r, 'c, 'rest) open_record

  val record : string -> 'c -> ('r, 'c, 'c) open_record
  (** [record name make]: the type's name (for messages) and its maker.
      @raise Invalid_argument if [name] is not an OCaml identifier. *)

  val field : string -> 'a t -> ('r -> 'a) -> ('r, 'a) field
  (** [field name ty get].
      @raise Invalid_argument if [name] is not an OCaml identifier, or if
      [ty] is a {!handle}, {!opaque} or {!func}. *)

  val ( |+ ) : ('r, 'c, 'a -> 'rest) open_record -> ('r, 'a) field -> ('r, 'c, 'rest) open_record

  val sealr : ('r, 'c, 'r) open_record -> 'r t
  (** @raise Invalid_argument if two fields have one name. *)

  (** {2 Variants}

      A variant is a Go interface type declared with
      [lwt.RegisterVariant], whose cases are struct types named as the
      constructors. A constant constructor's case has no fields; another's
      holds the constructor's argument: a tuple's parts in order, a
      record's fields by name, or one value in its only field. A
      constructor or case missing on either side is a mismatch.
{[
type shape = Circle of float | Rect of float * float | Empty

let shape =
  Ty.(variant "shape" (fun circle rect empty -> function
        | Circle r -> circle r | Rect (w, h) -> rect (w, h) | Empty -> empty)
      |~ case1 "Circle" float (fun r -> Circle r)
      |~ case1 "Rect" (pair float float) (fun (w, h) -> Rect (w, h))
      |~ case0 "Empty" Empty
      |> sealv)
]}
      with, in Go, [type Shape interface{ isShape() }], [type Circle
      struct{ R float64 }], [type Rect struct{ W, H float64 }], [type
      Empty struct{}] and [lwt.RegisterVariant[Shape](Circle{}, Rect{},
      Empty{})]. The function given to [variant] receives one argument per
      case, in the order of the cases, and maps each value to its
      constructor's. *)

  type 'v case_v
  type ('v, 'f) case
  type ('v, 'c, 'rest) open_variant

  val variant : string -> 'c -> ('v, 'c, 'c) open_variant
  (** [variant name dispatch].
      @raise Invalid_argument if [name] is not an OCaml identifier. *)

  val case0 : string -> 'v -> ('v, 'v case_v) case
  (** A constant constructor: its name and its value. *)

  val case1 : string -> 'a t -> ('a -> 'v) -> ('v, 'a -> 'v case_v) case
  (** A constructor with an argument: its name, the argument's type (a
      tuple for several), and the constructor. *)

  val ( |~ ) : ('v, 'c, 'f -> 'rest) open_variant -> ('v, 'f) case -> ('v, 'c, 'rest) open_variant

  val sealv : ('v, 'c, 'v -> 'v case_v) open_variant -> 'v t
  (** @raise Invalid_argument if there is no case, or two constructors of
      one name. *)

  (** {2 Values held across the boundary}

      These cross as arguments and results only, not inside the types
      above ([Invalid_argument] says so). *)

  val handle : 'a handle t
  (** Go [lwt.Handle[T]]: see {!handle}. *)

  val opaque : Opaque.t t
  (** Go [*lwt.Value]: see {!Opaque}. Go keeps the value alive (a GC root)
      until it releases it. *)

  val func : 'a t -> 'b t -> ('a -> 'b Lwt.t) t
  (** A function, both ways. From OCaml, Go [*lwt.Func[A, R]]: an OCaml
      closure that Go can call and await, which Go holds through a GC root
      until it releases it. From Go, an [*lwt.Callback[A, R]] (made by
      [lwt.NewCallback], [TaskCallback] or [SyncCallback]): a Go function
      that runs as its kind says, which the closure OCaml gets holds until
      OCaml's GC collects it. *)

  val promise : 'a t -> 'a Lwt.t t
  (** Go [*lwt.Promise[A]], both ways. An OCaml promise that Go gets
      settles Go's, which is pending until the Lwt loop's next turn even if
      OCaml's is settled; Go's [Promise.Cancel] is [Lwt.cancel] of it. A Go
      promise that OCaml gets settles OCaml's (on the Lwt thread);
      [Lwt.cancel] of it calls Go's [Promise.Cancel], which cancels the Go
      call behind a promise of [Func.Go] (other Go promises have nothing to
      cancel). Until it settles or is cancelled, a Go promise that OCaml got
      holds a loop task and a call of the bridge, even if OCaml drops it:
      cancel what you drop. *)

  val sync_func : 'a t -> 'b t -> ('a -> 'b) t
  (** A plain function, both ways. From OCaml, Go [*lwt.Func[A, R]] whose
      [Call] returns at once, anywhere on the Lwt thread. From Go, an
      [*lwt.Callback[A, R]] made by [lwt.SyncCallback] (another kind is a
      [Go_error] when it crosses), called directly. *)

  val stream : 'a t -> 'a Lwt_stream.t t
  (** A stream of values, both ways, read in batches: each crossing carries
      all the values ready, up to the buffer's size. ['a] is a type of the
      sections above (not a handle, opaque, function or promise).

      From Go, an [*lwt.Stream[A]] that a Go producer writes (through the
      [lwt.Sender] of [lwt.NewStream], or [lwt.StreamOf] of an
      [iter.Seq2[A, error]]): its bounded buffer makes the producer wait
      while OCaml has not read. Its end ends the Lwt stream; its error
      (a {!Go_error}, or the exception registered for it) is raised by the
      read after the last value, and ends the stream. OCaml's GC collecting
      the Lwt stream stops Go's producer ([Sender.Send] returns
      [lwt.ErrStreamStopped]); so does {!shutdown} ([lwt.ErrClosed]). A
      pending read holds the stream until Go answers it: in Lwt, what waits
      on a promise lives as long as whoever settles it. A Go value that
      cannot cross (an [int] past 63 bits) ends the stream: the values
      before it are read, then its {!Go_error}.

      From OCaml, any [Lwt_stream.t], which Go then reads ([Stream.Recv],
      or [Stream.All] as an [iter.Seq2[A, error]]) and OCaml should not:
      Go reads ahead up to 64 values. An exception raised by a read (of a
      stream made by [Lwt_stream.from], for example) ends Go's stream with
      an [*lwt.OCamlError]. When Go stops reading ([Stream.Close], or a
      loop over [All] left early), it reads no more: a producer of
      [Lwt_stream.from] is not called again, and a bounded push waits, as
      for any Lwt stream whose reader left. *)

  val to_string : 'a t -> string
  (** The type as OCaml spells it, e.g. ["(unit -> int Lwt.t)"]. *)

  (** {2 Functions of several arguments}

      [Ty.(int @-> string @-> returning bool)] describes an
      [int -> string -> bool Lwt.t] (for {!bind_fn}, {!register_fn}) and an
      [int -> string -> bool] (for {!bind_fn_sync}, {!register_fn_sync}):
      in Go, a function of [lwt.Args2[int64, string]], which [lwt.Fn2]
      makes from a [func(ctx, int64, string) (bool, error)] (and
      [lwt.SyncFn2] from a [func(int64, string) (bool, error)]). Each
      argument crosses as it would alone, closures and promises too. *)

  type ('l, 'p, 'r) args

  val returning : 'r t -> ('r Lwt.t, 'r, 'r) args

  val ( @-> ) : 'a t -> ('l, 'p, 'r) args -> ('a -> 'l, 'a -> 'p, 'r) args
end

val bind : string -> 'a Ty.t -> 'b Ty.t -> 'a -> 'b Lwt.t
(** [bind name a b] is the Go function registered as [name], of type
    [a -> b]. Each call runs it as it was registered: in a new goroutine
    ([lwt.Register]), as a loop task on the Lwt thread
    ([lwt.RegisterTask]), or directly ([lwt.RegisterSync]). The promise is
    rejected with {!Go_error} (or the exception registered for the error)
    if the Go function fails or panics, or with {!Closed} if the bridge is
    shut down first; [Lwt.cancel] on it cancels the Go function's
    [context.Context]. Lwt thread, both [bind] and the calls; a binding
    stays valid across {!shutdown} and {!init}.
    @raise Invalid_argument if [name] is not registered, or if its Go types
    do not match [a] and [b] (the message names both sides and where they
    differ). *)

val bind_sync : string -> 'a Ty.t -> 'b Ty.t -> 'a -> 'b
(** [bind_sync name a b] is the Go function registered with
    [lwt.RegisterSync] as [name], called directly; the call raises
    {!Go_error} if the Go function fails or panics, or {!Closed} after
    {!shutdown}.
    Lwt thread, both [bind_sync] and the calls.
    @raise Invalid_argument as {!bind} does, or if [name] is not a sync
    function. *)

val register : string -> 'a Ty.t -> 'b Ty.t -> ('a -> 'b Lwt.t) -> unit
(** [register name a b f] lets Go call [f] as [lwt.Lookup[A, R](name)],
    where Go's [A -> R] must be [a -> b] (Go's [Lookup] says so otherwise).
    [f] runs on the Lwt thread; an exception it raises, or its rejected
    promise, is an [*lwt.OCamlError] in Go. OCaml keeps the registrations
    (Go asks for one at its first [Lookup] of the name, and holds it until
    {!shutdown}); they outlive {!shutdown}. Before {!init} on any thread,
    after it on the Lwt thread.
    @raise Invalid_argument if [name] is already registered.
    @raise Failure from another thread after {!init}, registering nothing. *)

val register_sync : string -> 'a Ty.t -> 'b Ty.t -> ('a -> 'b) -> unit
(** [register_sync name a b f] is {!register} for a plain function: Go's
    [Func.Call] of it returns at once, and works anywhere on the Lwt thread
    (in a Go sync function too), not only in loop tasks and goroutines. *)

val bind_fn : string -> ('l, 'p, 'r) Ty.args -> 'l
(** [bind_fn name Ty.(a @-> b @-> returning r)] is {!bind} for a Go function
    of several arguments (registered as a function of an [lwt.Args2[A, B]],
    [Args3] or [Args4], see [lwt.Fn2]): an ['a -> 'b -> 'r Lwt.t].
    @raise Invalid_argument as {!bind} does, or for fewer than 2 or more
    than 4 arguments (so do the three below). *)

val bind_fn_sync : string -> ('l, 'p, 'r) Ty.args -> 'p
(** {!bind_sync} for a Go function of several arguments: an
    ['a -> 'b -> 'r]. *)

val register_fn : string -> ('l, 'p, 'r) Ty.args -> 'l -> unit
(** {!register} for an OCaml function of several arguments, which Go looks
    up as a [Func[lwt.Args2[A, B], R]] (or [Args3], [Args4]). *)

val register_fn_sync : string -> ('l, 'p, 'r) Ty.args -> 'p -> unit
(** {!register_sync} for a plain OCaml function of several arguments. *)

type stats = {
  roots : int;  (** OCaml values held by Go *)
  handles : int;  (** Go values held by OCaml *)
  jobs : int;  (** Go jobs queued for the Lwt thread *)
  tasks : int;  (** live Go loop tasks *)
  calls : int;  (** calls in flight between the two sides *)
  stalls : int;
      (** times, since the program started, that Go code held the Lwt
          thread for over 100 ms in one go (each is also reported on
          stderr): a loop task or sync function that blocks *)
}

val stats : unit -> stats
(** What the bridge holds now; after {!shutdown}, all zero but [handles]
    and [stalls] (a running total). Any thread. *)

external on_lwt_thread : unit -> bool = "lwt_interop_on_lwt_thread" [@@noalloc]
(** Whether the caller runs on the thread that called {!init} (also after
    {!shutdown}). Any thread. *)
