//! `bot-bottle supervise`: the operator console. Pending proposals from
//! every bottle's store, oldest first; a detail pane; approve, modify (in
//! `$VISUAL`/`$EDITOR`, then approve the edit) or reject with a reason typed
//! inline. New proposals appear within a second and ring the bell.
//! `--once` prints what is pending; `--json` prints it for scripts.
//!
//! The model and key handling are [`queue`]; this file is the terminal
//! shell around it (ratatui) and the reads and writes of the stores.

pub mod queue;

use std::io::Write;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, Result, bail};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, ListState, Paragraph, Wrap};
use state::BottleMetadata;
use supervise::{Answer, ProposalStore};

use crate::cli::SuperviseArgs;
use crate::context::{Context, warn};
use crate::terminal;
use queue::{Console, Effect, Key, Pending, age, detail, summary};

pub fn supervise(ctx: &Context, args: SuperviseArgs) -> Result<i32> {
    if args.once || args.json {
        let (items, problems) = collect(ctx);
        for p in problems {
            warn(&p);
        }
        let mut items = items;
        items.sort_by(|a, b| a.proposal.created_at.cmp(&b.proposal.created_at));
        if args.json {
            let out: Vec<serde_json::Value> = items
                .iter()
                .map(|p| {
                    let mut v = serde_json::to_value(&p.proposal).unwrap_or_default();
                    if let Some(obj) = v.as_object_mut() {
                        obj.insert("label".into(), p.label.clone().into());
                        obj.insert("summary".into(), summary(&p.proposal).into());
                    }
                    v
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            let color = terminal::color_stdout();
            let now = SystemTime::now();
            if items.is_empty() {
                println!("no pending proposals");
            }
            for p in &items {
                let line = summary(&p.proposal);
                let line =
                    if p.proposal.weakens_dlp().is_empty() { line } else { terminal::paint(&line, "red", color) };
                println!(
                    "{:>4}  {}  #{} {}  {}",
                    age(&p.proposal.created_at, now),
                    terminal::paint(&shown::line(&p.label), &p.color, color),
                    p.proposal.id,
                    p.proposal.kind.as_str(),
                    line
                );
            }
        }
        return Ok(0);
    }
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        bail!("the console needs a terminal; use --once or --json to print what is pending");
    }
    run(ctx)
}

/// Every pending proposal in every bottle's store, and what could not be read.
fn collect(ctx: &Context) -> (Vec<Pending>, Vec<String>) {
    let mut items = Vec::new();
    let mut problems = Vec::new();
    for identity in ctx.home.identities() {
        let dir = ctx.home.state_dir(&identity);
        let store = supervise::store_path(&dir);
        if !store.exists() {
            continue;
        }
        let meta = BottleMetadata::read(&dir).ok();
        let label = meta.as_ref().map(|m| m.label.clone()).filter(|l| !l.is_empty()).unwrap_or(identity.clone());
        let color = meta.map(|m| m.color).unwrap_or_default();
        match ProposalStore::open(&store, &identity).and_then(|s| s.pending()) {
            Ok(pending) => items.extend(pending.into_iter().map(|proposal| Pending {
                label: label.clone(),
                color: color.clone(),
                store: store.clone(),
                proposal,
            })),
            Err(e) => problems.push(format!("{identity}: {e}")),
        }
    }
    (items, problems)
}

fn operator() -> String {
    std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| "operator".to_string())
}

fn color_of(name: &str) -> Color {
    match name.to_ascii_lowercase().as_str() {
        "black" => Color::Black,
        "red" => Color::Red,
        "green" => Color::Green,
        "yellow" => Color::Yellow,
        "blue" => Color::Blue,
        "magenta" | "purple" => Color::Magenta,
        "cyan" => Color::Cyan,
        "white" => Color::White,
        "orange" => Color::Indexed(208),
        "pink" => Color::Indexed(205),
        other => other.parse::<u8>().map(Color::Indexed).unwrap_or(Color::Reset),
    }
}

fn key_of(code: KeyCode) -> Option<Key> {
    Some(match code {
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::Enter => Key::Enter,
        KeyCode::Esc => Key::Esc,
        KeyCode::Backspace => Key::Backspace,
        _ => return None,
    })
}

fn run(ctx: &Context) -> Result<i32> {
    let mut console = Console::default();
    let (items, _) = collect(ctx);
    console.refresh(items);
    let mut terminal = ratatui::init();
    let result = (|| -> Result<()> {
        let mut last = Instant::now();
        loop {
            terminal.draw(|f| draw(f, &console))?;
            if last.elapsed() >= Duration::from_secs(1) {
                let (items, problems) = collect(ctx);
                if console.refresh(items) {
                    // A new proposal: ring the bell.
                    let mut out = std::io::stdout();
                    let _ = out.write_all(b"\x07");
                    let _ = out.flush();
                }
                if let Some(p) = problems.first() {
                    console.status = p.clone();
                }
                last = Instant::now();
            }
            if !event::poll(Duration::from_millis(250))? {
                continue;
            }
            let Event::Key(k) = event::read()? else { continue };
            if k.kind != KeyEventKind::Press {
                continue;
            }
            if k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c') {
                return Ok(());
            }
            let Some(key) = key_of(k.code) else { continue };
            match console.on_key(key) {
                Effect::None => {}
                Effect::Quit => return Ok(()),
                Effect::Decide { store, identity, id, answer, reason } => {
                    console.status = decide(&store, &identity, id, &answer, &reason);
                    let (items, _) = collect(ctx);
                    console.refresh(items);
                }
                Effect::Edit { store, identity, id, payload } => {
                    ratatui::restore();
                    let edited = edit(&payload);
                    terminal = ratatui::init();
                    console.status = match edited {
                        Ok(Some(v)) => decide(&store, &identity, id, &Answer::Modify(v), ""),
                        Ok(None) => "unchanged; nothing decided".to_string(),
                        Err(e) => format!("not decided: {e:#}"),
                    };
                    let (items, _) = collect(ctx);
                    console.refresh(items);
                }
            }
        }
    })();
    ratatui::restore();
    result?;
    Ok(0)
}

fn decide(store: &std::path::Path, identity: &str, id: i64, answer: &Answer, reason: &str) -> String {
    let done = ProposalStore::open(store, identity).and_then(|mut s| s.decide(id, answer, reason, &operator()));
    match done {
        Ok(p) => format!("#{id} {}", p.status.as_str()),
        Err(e) => format!("#{id} not decided: {e}"),
    }
}

/// Edit a payload in the operator's editor; `None` when unchanged.
fn edit(payload: &serde_json::Value) -> Result<Option<serde_json::Value>> {
    let before = serde_json::to_string_pretty(payload)? + "\n";
    let file = std::env::temp_dir().join(format!("bot-bottle-proposal-{}.json", std::process::id()));
    std::fs::write(&file, &before).with_context(|| format!("cannot write {}", file.display()))?;
    let editor = std::env::var("VISUAL")
        .ok()
        .filter(|e| !e.is_empty())
        .or_else(|| std::env::var("EDITOR").ok().filter(|e| !e.is_empty()))
        .unwrap_or_else(|| "vi".to_string());
    let status = std::process::Command::new("sh")
        .args(["-c", &format!("{editor} \"$1\""), "editor"])
        .arg(&file)
        .status()
        .with_context(|| format!("cannot run the editor {editor}"))?;
    let after = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()));
    let _ = std::fs::remove_file(&file);
    let after = after?;
    if !status.success() {
        bail!("the editor {editor} failed");
    }
    if after == before {
        return Ok(None);
    }
    let value = serde_json::from_str(&after).context("the edit is not valid JSON")?;
    Ok(Some(value))
}

fn draw(f: &mut ratatui::Frame<'_>, c: &Console) {
    let [top, bottom] = Layout::vertical([Constraint::Min(3), Constraint::Length(1)]).areas(f.area());
    let [left, right] = Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(top);
    let now = SystemTime::now();
    let items: Vec<ListItem<'_>> = c
        .items
        .iter()
        .map(|p| {
            ListItem::new(Line::from(vec![
                Span::raw(format!("{:>4} ", age(&p.proposal.created_at, now))),
                Span::styled(p.label.clone(), Style::default().fg(color_of(&p.color)).add_modifier(Modifier::BOLD)),
                Span::raw(format!(" {} ", p.proposal.kind.as_str())),
                if p.proposal.weakens_dlp().is_empty() {
                    Span::raw(summary(&p.proposal))
                } else {
                    Span::styled(summary(&p.proposal), Style::default().fg(Color::Red).add_modifier(Modifier::BOLD))
                },
            ]))
        })
        .collect();
    let title = format!(" supervise: {} pending  (a approve · m modify · r reject · q quit) ", c.items.len());
    let list = List::new(items)
        .block(Block::default().borders(Borders::ALL).title(title))
        .highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    let mut state = ListState::default();
    if !c.items.is_empty() {
        state.select(Some(c.selected));
    }
    f.render_stateful_widget(list, left, &mut state);
    let text = c.current().map(detail).unwrap_or_else(|| "nothing pending".to_string());
    f.render_widget(
        Paragraph::new(text).wrap(Wrap { trim: false }).block(Block::default().borders(Borders::ALL).title(" detail ")),
        right,
    );
    let line = match c.prompt() {
        Some(p) if !c.status.is_empty() => format!("{p}    ({})", c.status),
        Some(p) => p,
        None => c.status.clone(),
    };
    f.render_widget(Paragraph::new(line), bottom);
}
