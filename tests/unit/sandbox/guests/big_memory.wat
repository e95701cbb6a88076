;; Hostile: declares a 128 MiB initial memory (over the 64 MiB default cap). Expected: memory_limit at instantiation.
(module
  (memory (export "memory") 2048)
  (func (export "realm_abi_version") (result i32) (i32.const 1))
  (func (export "realm_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "realm_free") (param i32))
  (func (export "realm_init") (result i32) (i32.const 0))
  (func (export "realm_handle_request") (param i32 i32) (result i32) (i32.const 0)))
