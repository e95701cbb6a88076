# Builds the Wasmtime C API (crates.io `wasmtime-c-api-impl`, pinned) through the staticlib shim crate in
# wasmtime/shim, once per machine, and defines the imported target `realm::wasmtime`.
#
# Cache layout (shared by every checkout and build dir of this user):
#   ${REALM_CACHE_DIR}/wasmtime-<version>-cargo-target/   cargo's target dir, shared by all keys (so editing the
#                                                         shim rebuilds only the shim crate; cargo locks it)
#   ${REALM_CACHE_DIR}/wasmtime-<version>-<key>/
#       lib/librealm_wasmtime_shim.a the static library we link
#       include/                     wasm.h, wasmtime.h, wasmtime.hh, ... (copied from the crate)
#       include/wasmtime/conf.h      generated from conf.h.in for exactly the enabled features
#       stamp                        written last; if present, nothing is rebuilt
#   <key> = first 16 hex digits of sha256(Cargo.toml + Cargo.lock + src/lib.rs + feature list + rustc -V).
#
# The build runs at configure time (under a file lock, so concurrent configures on one machine wait for each
# other instead of racing). It tries `cargo build --offline` first and falls back to the network.

set(REALM_WASMTIME_VERSION "48.0.8")
# Cargo features of wasmtime-c-api-impl; the single source of truth for both the library and conf.h.
set(REALM_WASMTIME_FEATURES cranelift pooling-allocator wat wasi parallel-compilation disable-logging)

if(DEFINED ENV{REALM_CACHE_DIR})
  set(_realm_cache_default "$ENV{REALM_CACHE_DIR}")
else()
  set(_realm_cache_default "$ENV{HOME}/.cache/realm")
endif()
set(REALM_CACHE_DIR "${_realm_cache_default}" CACHE PATH "Per-machine cache for expensive builds (Wasmtime, models)")

set(_wt_shim_dir "${PROJECT_SOURCE_DIR}/wasmtime/shim")

find_program(REALM_CARGO cargo HINTS "$ENV{HOME}/.cargo/bin" REQUIRED)
find_program(REALM_RUSTC rustc HINTS "$ENV{HOME}/.cargo/bin" REQUIRED)

# Editing the shim re-runs CMake, which (with a new key) builds a new cache entry.
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
             "${_wt_shim_dir}/Cargo.toml" "${_wt_shim_dir}/Cargo.lock" "${_wt_shim_dir}/src/lib.rs")

execute_process(COMMAND "${REALM_RUSTC}" -V OUTPUT_VARIABLE _wt_rustc_version
                OUTPUT_STRIP_TRAILING_WHITESPACE COMMAND_ERROR_IS_FATAL ANY)
file(READ "${_wt_shim_dir}/Cargo.toml" _wt_toml)
file(READ "${_wt_shim_dir}/Cargo.lock" _wt_lock)
file(READ "${_wt_shim_dir}/src/lib.rs" _wt_librs)
string(JOIN "," _wt_features_csv ${REALM_WASMTIME_FEATURES})
string(SHA256 _wt_key "${_wt_toml}\n--\n${_wt_lock}\n--\n${_wt_librs}\n--\n${_wt_features_csv}\n--\n${_wt_rustc_version}")
string(SUBSTRING "${_wt_key}" 0 16 _wt_key)

set(REALM_WASMTIME_DIR "${REALM_CACHE_DIR}/wasmtime-${REALM_WASMTIME_VERSION}-${_wt_key}")
set(_wt_lib "${REALM_WASMTIME_DIR}/lib/librealm_wasmtime_shim.a")
set(_wt_inc "${REALM_WASMTIME_DIR}/include")
set(_wt_stamp "${REALM_WASMTIME_DIR}/stamp")
set(_wt_target_dir "${REALM_CACHE_DIR}/wasmtime-${REALM_WASMTIME_VERSION}-cargo-target")

if(NOT EXISTS "${_wt_stamp}")
  file(MAKE_DIRECTORY "${REALM_WASMTIME_DIR}")
  file(LOCK "${REALM_WASMTIME_DIR}.lock" GUARD FILE TIMEOUT 3600 RESULT_VARIABLE _wt_lock_result)
  if(NOT _wt_lock_result EQUAL 0)
    message(FATAL_ERROR "wasmtime: could not lock ${REALM_WASMTIME_DIR}.lock: ${_wt_lock_result}")
  endif()
endif()

# Re-check under the lock: another configure may have finished the build while we waited.
if(NOT EXISTS "${_wt_stamp}")
  message(STATUS "wasmtime: building wasmtime-c-api-impl ${REALM_WASMTIME_VERSION} [${_wt_features_csv}] "
                 "into ${REALM_WASMTIME_DIR} (once per machine, several minutes)")
  set(_wt_cargo_args build --release --locked --manifest-path "${_wt_shim_dir}/Cargo.toml"
      --target-dir "${_wt_target_dir}" --features "${_wt_features_csv}")
  execute_process(COMMAND "${REALM_CARGO}" ${_wt_cargo_args} --offline RESULT_VARIABLE _wt_rc
                  ERROR_VARIABLE _wt_offline_err)
  if(NOT _wt_rc EQUAL 0)
    message(STATUS "wasmtime: offline build failed, retrying with network access")
    execute_process(COMMAND "${REALM_CARGO}" ${_wt_cargo_args} RESULT_VARIABLE _wt_rc)
    if(NOT _wt_rc EQUAL 0)
      message(FATAL_ERROR "wasmtime: cargo build failed (${_wt_rc}); offline attempt said:\n${_wt_offline_err}")
    endif()
  endif()

  # Headers come from the exact crate version cargo resolved.
  execute_process(COMMAND "${REALM_CARGO}" metadata --format-version 1 --locked --offline
                          --manifest-path "${_wt_shim_dir}/Cargo.toml" --filter-platform x86_64-unknown-linux-gnu
                  OUTPUT_VARIABLE _wt_meta RESULT_VARIABLE _wt_rc ERROR_VARIABLE _wt_meta_err)
  if(NOT _wt_rc EQUAL 0)
    message(FATAL_ERROR "wasmtime: cargo metadata failed: ${_wt_meta_err}")
  endif()
  string(JSON _wt_npkg LENGTH "${_wt_meta}" packages)
  math(EXPR _wt_last "${_wt_npkg} - 1")
  set(_wt_crate_dir "")
  foreach(i RANGE ${_wt_last})
    string(JSON _name GET "${_wt_meta}" packages ${i} name)
    string(JSON _ver GET "${_wt_meta}" packages ${i} version)
    if(_name STREQUAL "wasmtime-c-api-impl" AND _ver STREQUAL REALM_WASMTIME_VERSION)
      string(JSON _manifest GET "${_wt_meta}" packages ${i} manifest_path)
      get_filename_component(_wt_crate_dir "${_manifest}" DIRECTORY)
    endif()
  endforeach()
  if(_wt_crate_dir STREQUAL "" OR NOT EXISTS "${_wt_crate_dir}/include/wasmtime.h")
    message(FATAL_ERROR "wasmtime: could not locate wasmtime-c-api-impl ${REALM_WASMTIME_VERSION} sources")
  endif()

  file(REMOVE_RECURSE "${_wt_inc}")
  file(COPY "${_wt_crate_dir}/include/" DESTINATION "${_wt_inc}" PATTERN "conf.h.in" EXCLUDE)
  # conf.h: the same substitution upstream's CMakeLists does (configure_file on conf.h.in with one
  # WASMTIME_FEATURE_<NAME> variable per enabled cargo feature).
  foreach(f ${REALM_WASMTIME_FEATURES})
    string(TOUPPER "WASMTIME_FEATURE_${f}" _var)
    string(REPLACE "-" "_" _var "${_var}")
    set(${_var} ON)
  endforeach()
  configure_file("${_wt_crate_dir}/include/wasmtime/conf.h.in" "${_wt_inc}/wasmtime/conf.h")

  file(MAKE_DIRECTORY "${REALM_WASMTIME_DIR}/lib")
  file(COPY_FILE "${_wt_target_dir}/release/librealm_wasmtime_shim.a" "${_wt_lib}")
  file(WRITE "${_wt_stamp}" "wasmtime-c-api-impl ${REALM_WASMTIME_VERSION}\nfeatures: ${_wt_features_csv}\n${_wt_rustc_version}\n")
  message(STATUS "wasmtime: cached in ${REALM_WASMTIME_DIR}")
endif()
file(LOCK "${REALM_WASMTIME_DIR}.lock" RELEASE RESULT_VARIABLE _wt_ignored)

if(NOT TARGET realm::wasmtime)
  add_library(realm::wasmtime STATIC IMPORTED GLOBAL)
  set_target_properties(realm::wasmtime PROPERTIES
    IMPORTED_LOCATION "${_wt_lib}"
    INTERFACE_INCLUDE_DIRECTORIES "${_wt_inc}"
    # The headers are third-party: keep -Werror for our code only.
    INTERFACE_SYSTEM_INCLUDE_DIRECTORIES "${_wt_inc}"
    INTERFACE_LINK_LIBRARIES "Threads::Threads;${CMAKE_DL_LIBS};m")
endif()
message(STATUS "wasmtime: ${_wt_lib}")
