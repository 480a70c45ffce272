//! What the interactive clients (chat and TUI) say where the server can only name the protocol
//! (`NICK`, `ANSWER n`): the command to type instead.

use tlschat_proto::reply::ErrorReply;
use tlschat_proto::ErrorCode;

use crate::text::sanitize;

/// An `ERR` reply as the interactive clients show it: the server's words, with what to type
/// where the server can only name the protocol verb.
pub(crate) fn interactive_error(err: &ErrorReply) -> String {
    let hint = match err.code {
        ErrorCode::NoNick => " (set one with /nick NAME, or connect with --cert and --key)",
        _ => "",
    };
    format!("{} {}{hint}", err.code, sanitize(&err.message))
}

/// A `QUIZ` problem as the interactive clients show it: the question, and how to answer there
/// (the server's own hint names the protocol's `ANSWER n`).
pub(crate) fn quiz_question(problem: &str, how: &str) -> String {
    let question = problem.split(" Reply with").next().unwrap_or(problem);
    format!("{} ({how})", sanitize(question))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interactive_clients_name_their_own_commands() {
        let err = ErrorReply {
            code: ErrorCode::NoNick,
            message: "set a nickname with NICK first".into(),
        };
        assert!(interactive_error(&err).contains("/nick NAME"));
        assert_eq!(
            quiz_question(
                "What is 2 + 3? Reply with ANSWER n",
                "answer with /answer n"
            ),
            "What is 2 + 3? (answer with /answer n)"
        );
    }
}
