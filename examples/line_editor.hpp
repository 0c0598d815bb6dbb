#pragma once
// The prompt's line editing and history, from libedit (BSD licence) through its readline-style
// callback interface, so that the console's loop keeps watching signals and commands while the
// user types. History is kept in ~/.dhtkit_history (the last 1000 lines).

#include <editline/readline.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>

#include <dhtkit/app/console.hpp>

namespace examples {

class line_editor : public dhtkit::line_input {
public:
    explicit line_editor(std::string prompt) : line_input(std::move(prompt)) {
        rl_catch_signals = 0;  // SIGINT and SIGTERM come through the console's signalfd
        using_history();
        stifle_history(1000);
        if (const char* home = std::getenv("HOME"); home && *home) {
            history_file_ = (std::filesystem::path(home) / ".dhtkit_history").string();
            read_history(history_file_.c_str());
        }
    }
    ~line_editor() override {
        end_line();
        if (!history_file_.empty()) write_history(history_file_.c_str());
    }

    void start_line() override {
        if (installed_) end_line();
        rl_callback_handler_install(prompt_.c_str(), &line_editor::on_line);
        installed_ = true;
    }
    bool read_some(const std::function<void(std::string)>& line) override {
        done_ = false;
        eof_ = false;
        current_ = this;
        rl_callback_read_char();
        current_ = nullptr;
        if (done_) {
            end_line();
            if (!eof_) {
                if (!got_.empty()) add_history(got_.c_str());
                line(std::move(got_));
            }
        }
        return !eof_;
    }
    void discard_line() override {
        rl_replace_line("", 0);
        std::fputs("^C\n", stdout);
        end_line();
    }
    void end_line() override {
        if (!installed_) return;
        rl_callback_handler_remove();
        installed_ = false;
    }

private:
    static void on_line(char* text) {
        auto* self = current_;
        if (!self) return std::free(text);
        self->done_ = true;
        self->eof_ = text == nullptr;
        if (text) {
            self->got_ = text;
            std::free(text);
        } else {
            std::fputs("\n", stdout);
        }
    }

    static inline line_editor* current_ = nullptr;  // the editor whose read_some is running
    std::string history_file_;
    std::string got_;
    bool installed_ = false;
    bool done_ = false;
    bool eof_ = false;
};

}  // namespace examples
