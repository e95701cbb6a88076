;; Hostile: executes `unreachable`. Expected: trap.
(module
  (memory (export "memory") 1)
  (func (export "realm_abi_version") (result i32) (i32.const 1))
  (func (export "realm_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "realm_free") (param i32))
  (func (export "realm_init") (result i32) (i32.const 0))
  (func (export "realm_handle_request") (param i32 i32) (result i32) (unreachable)))
