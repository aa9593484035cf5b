open Lwt.Infix
module I = Lwt_interop

let unit_fn = I.Ty.(func unit unit)

let test_sync () =
  let add1 = I.bind_sync "test.add1" I.Ty.int I.Ty.int in
  Alcotest.(check int) "add1" 42 (add1 41)

let test_echo () =
  let echo = I.bind "test.echo" I.Ty.string I.Ty.string in
  Lwt_main.run (echo "a\000b" >|= Alcotest.(check string) "echo" "a\000b")

let () =
  I.init ();
  Alcotest.run "lwt_interop"
    [ ("calls", [ Alcotest.test_case "sync" `Quick test_sync; Alcotest.test_case "echo" `Quick test_echo ]) ];
  ignore unit_fn
