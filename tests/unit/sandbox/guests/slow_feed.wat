;; Feeds a token to a slow model forever, ignoring errors. Expected: deadline, although most of the time is
;; spent inside host calls (the host checks the deadline before backend work; wasm checks it on resume).
(module
  (import "realm" "model_open" (func $open (param i32 i32) (result i32)))
  (import "realm" "seq_open" (func $seq (param i32) (result i32)))
  (import "realm" "seq_feed" (func $feed (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "slow")
  (data (i32.const 32) "\61\00\00\00")
  (func (export "realm_abi_version") (result i32) (i32.const 1))
  (func (export "realm_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "realm_free") (param i32))
  (func (export "realm_init") (result i32) (i32.const 0))
  (func (export "realm_handle_request") (param i32 i32) (result i32) (local $s i32)
    (local.set $s (call $seq (call $open (i32.const 16) (i32.const 4))))
    (loop $l (drop (call $feed (local.get $s) (i32.const 32) (i32.const 1))) (br $l))
    (i32.const 0)))
