//! What commits add, read from `git log -p` output: per commit its message
//! and, per file, the added lines joined into one text (so a multi-line
//! secret is seen whole) with each line's number in the new file, and which
//! new blobs the log showed as a text diff (every other new blob is read
//! whole by the object scan). Pure: text in, structure out;
//! [`crate::push_scan`] runs git.

/// The `git log` arguments whose output [`parse_log`] reads (before the
/// revisions): patches with no context, no colour, no renames, and for a
/// merge only what it adds beyond an automatic merge of its parents.
pub const LOG_ARGS: &[&str] = &[
    "-c",
    "core.quotePath=false",
    "log",
    "-p",
    "--unified=0",
    "--no-color",
    "--no-ext-diff",
    "--no-renames",
    "--no-textconv",
    "--full-index",
    "--diff-merges=remerge",
    "--format=%x00%x01%H%n%B%x00",
];

/// One commit's additions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitChanges {
    /// The commit's id.
    pub commit: String,
    /// Its message.
    pub message: String,
    /// The text each file gained.
    pub files: Vec<AddedText>,
    /// The new blobs this commit's log showed as a text diff: every line
    /// they add is in `files`, so the object scan need not read them.
    pub text_blobs: Vec<String>,
}

impl CommitChanges {
    /// What to scan: the message (path `None`, lines numbered from 1), then
    /// each file's added text with its line numbers.
    pub fn texts(&self) -> impl Iterator<Item = (Option<&str>, &str, std::borrow::Cow<'_, [usize]>)> {
        let message_lines: Vec<usize> = (1..=self.message.lines().count().max(1)).collect();
        std::iter::once((None, self.message.as_str(), std::borrow::Cow::Owned(message_lines))).chain(
            self.files
                .iter()
                .map(|f| (Some(f.path.as_str()), f.text.as_str(), std::borrow::Cow::Borrowed(&f.lines[..]))),
        )
    }
}

/// The lines one commit adds to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedText {
    /// The file's path.
    pub path: String,
    /// The added lines, each ending in `\n`.
    pub text: String,
    /// The new-file line number of each line of `text`.
    pub lines: Vec<usize>,
}

/// The separator before each commit in [`LOG_ARGS`] output.
pub const COMMIT_MARK: &[u8] = b"\x00\x01";

/// Parse the output of `git` [`LOG_ARGS`] `<revs>`.
pub fn parse_log(output: &str) -> Vec<CommitChanges> {
    output.split("\u{0}\u{1}").filter_map(parse_commit).collect()
}

/// Parse one commit's piece of the output (what follows a [`COMMIT_MARK`]).
pub fn parse_commit(piece: &str) -> Option<CommitChanges> {
    let (commit, rest) = piece.split_once('\n')?;
    let (message, diff) = rest.split_once('\u{0}').unwrap_or((rest, ""));
    let (files, text_blobs) = parse_diff(diff);
    Some(CommitChanges { commit: commit.to_string(), message: message.to_string(), files, text_blobs })
}

/// Parse a unified diff (`--unified=0`) into the added text per file.
pub fn added_lines(diff: &str) -> Vec<AddedText> {
    parse_diff(diff).0
}

/// Parse a unified diff (`--unified=0 --full-index`): the added text per
/// file, and the new blob of each file section shown as text (its `index
/// old..new` line, no `Binary files` line).
pub fn parse_diff(diff: &str) -> (Vec<AddedText>, Vec<String>) {
    let mut files: Vec<AddedText> = Vec::new();
    let mut text_blobs = Vec::new();
    // The current section's new blob, until it turns out to be binary.
    let mut section_blob: Option<String> = None;
    let mut in_hunk = false;
    let mut next_line = 0;
    for line in diff.lines() {
        if line.starts_with("diff ") {
            text_blobs.extend(section_blob.take());
            in_hunk = false;
        } else if !in_hunk && let Some(index) = line.strip_prefix("index ") {
            let new = index.split_whitespace().next().and_then(|r| r.split_once("..")).map(|(_, n)| n);
            section_blob = new.filter(|n| is_full_oid(n) && !n.bytes().all(|b| b == b'0')).map(str::to_string);
        } else if !in_hunk && (line.starts_with("Binary files ") || line == "GIT binary patch") {
            section_blob = None;
        } else if let Some(hunk) = line.strip_prefix("@@ ") {
            // @@ -a,b +c,d @@
            in_hunk = true;
            next_line = hunk
                .split_whitespace()
                .find_map(|w| w.strip_prefix('+'))
                .and_then(|w| w.split(',').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        } else if !in_hunk {
            if let Some(path) = line.strip_prefix("+++ ") {
                let path = path.strip_prefix("b/").unwrap_or(path).to_string();
                files.push(AddedText { path, text: String::new(), lines: Vec::new() });
            }
        } else if let Some(added) = line.strip_prefix('+') {
            if let Some(file) = files.last_mut() {
                file.text.push_str(added);
                file.text.push('\n');
                file.lines.push(next_line);
            }
            next_line += 1;
        }
    }
    text_blobs.extend(section_blob);
    files.retain(|f| !f.text.is_empty() && f.path != "/dev/null");
    (files, text_blobs)
}

fn is_full_oid(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_lines_with_numbers() {
        let diff = "diff --git a/a.txt b/a.txt\nindex 1..2 100644\n--- a/a.txt\n+++ b/a.txt\n@@ -3,0 +4,2 @@\n+one\n+++ two\n@@ -9 +11 @@\n-old\n+new\ndiff --git a/gone b/gone\n--- a/gone\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n";
        let files = added_lines(diff);
        assert_eq!(
            files,
            vec![AddedText { path: "a.txt".into(), text: "one\n++ two\nnew\n".into(), lines: vec![4, 5, 11] }]
        );
    }

    #[test]
    fn a_log_splits_into_commits_with_messages() {
        let log = "\u{0}\u{1}aaaa\nfirst line\n\nbody\n\u{0}\n\ndiff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -0,0 +1 @@\n+hello\n\u{0}\u{1}bbbb\nsecond\n\u{0}\n";
        let commits = parse_log(log);
        assert_eq!(commits.len(), 2);
        assert_eq!((commits[0].commit.as_str(), commits[0].message.as_str()), ("aaaa", "first line\n\nbody\n"));
        assert_eq!(commits[0].files[0].text, "hello\n");
        assert_eq!((commits[1].commit.as_str(), commits[1].files.len()), ("bbbb", 0));
    }
}
