;; Hostile: a start function that calls a host import before the host knows the memory. Expected: the call
;; fails cleanly (REALM_E_OUT_OF_BOUNDS), the start function then traps on purpose if it did not.
(module
  (import "realm" "log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func $start (if (i32.ne (call $log (i32.const 1) (i32.const 0) (i32.const 4)) (i32.const -2)) (then unreachable)))
  (start $start)
  (func (export "realm_abi_version") (result i32) (i32.const 1))
  (func (export "realm_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "realm_free") (param i32))
  (func (export "realm_init") (result i32) (i32.const 0))
  (func (export "realm_handle_request") (param i32 i32) (result i32) (i32.const 0)))
