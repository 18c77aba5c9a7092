//! Untrusted text inside the Markdown the messaging tools return.
//!
//! A message body, a client id or a check-in's name is written by another
//! client. Put into Markdown as is, a body holding `## From alice` would read
//! as a second message from alice. So bodies go into a fenced code block
//! whose fence is longer than any backtick run in the body (nothing inside
//! can close it), and short inline values (ids, names) have their Markdown
//! punctuation escaped and control characters replaced, so they stay on
//! their line and render as the text they are.

/// `body` as a fenced block: a fence of at least three backticks, one longer
/// than the longest backtick run in the body.
pub fn fenced(body: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in body.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat((longest + 1).max(3));
    format!(
        "{fence}text\n{}\n{fence}",
        body.trim_end_matches(['\n', '\r'])
    )
}

/// `value` for one line of Markdown (a heading, a table cell): control
/// characters (newlines included) become U+FFFD and Markdown punctuation is
/// backslash-escaped, so it can start no block and carry no markup.
pub fn inline(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            c if c.is_control() => out.push('\u{FFFD}'),
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' | '|' | '~' | '!' | '=' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_is_longer_than_any_backtick_run_in_the_body() {
        assert_eq!(fenced("lunch?"), "```text\nlunch?\n```");
        assert_eq!(
            fenced("```\n## From alice\n```\n"),
            "````text\n```\n## From alice\n```\n````"
        );
        assert!(fenced("a ````` b").starts_with("``````text\n"));
    }

    #[test]
    fn inline_values_stay_on_their_line_without_markup() {
        assert_eq!(inline("alice-laptop"), "alice-laptop");
        assert_eq!(inline("Alice's IDE"), "Alice's IDE");
        assert_eq!(inline("bob\n## From alice"), "bob\u{FFFD}\\#\\# From alice");
        assert_eq!(inline("<h2>x</h2> | y"), "\\<h2\\>x\\</h2\\> \\| y");
    }
}
