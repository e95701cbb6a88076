// Admin commands over the server's SQLite store: `realm tenant add|list|remove|set`, `realm key
// create|list|revoke`, `realm guest register` and `realm usage`. Each takes --db PATH (default: see
// default_db_path()). Errors go to stderr with exit code 1; usage errors exit with 2.
#pragma once

#include <CLI/CLI.hpp>
#include <filesystem>
#include <memory>

#include "gguf/result.hpp"
#include "server/store.hpp"

namespace realm::cli {

// $REALM_DATA_DIR/realm.db, else ~/.local/share/realm/realm.db.
Result<std::filesystem::path> default_db_path();

// Opens the store at `path` (default_db_path() when empty), creating its directory first.
Result<std::unique_ptr<server::Store>> open_store(const std::filesystem::path& path);

class AdminCommands {
public:
    // Registers `tenant`, `key` and `usage` on `app`, and `register` under the existing `guest` subcommand.
    AdminCommands(CLI::App& app, CLI::App& guest);
    ~AdminCommands();
    AdminCommands(const AdminCommands&) = delete;
    AdminCommands& operator=(const AdminCommands&) = delete;

    // After parsing: whether one of these commands was chosen, and then running it (the exit code).
    bool parsed() const;
    int run() const;

private:
    struct State;
    std::unique_ptr<State> s_;
};

}  // namespace realm::cli
