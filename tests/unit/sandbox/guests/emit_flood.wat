;; Hostile: emits the same chunk forever, ignoring errors. Expected: emit_limit.
(module
  (import "realm" "emit" (func $emit (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "flood!")
  (func (export "realm_abi_version") (result i32) (i32.const 1))
  (func (export "realm_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "realm_free") (param i32))
  (func (export "realm_init") (result i32) (i32.const 0))
  (func (export "realm_handle_request") (param i32 i32) (result i32)
    (loop $l (drop (call $emit (i32.const 16) (i32.const 6))) (br $l))
    (i32.const 0)))
