//! Leads as CSV, the same for the API and the panel: the export (one row
//! per contact, or per lead without one) and the import, checked whole
//! before anything is written, with every bad row named by its line.

use keyledger_domain::{parse_email, parse_lead_text, Contact, Lead};

/// Rows one import takes at most.
pub const MAX_IMPORT_ROWS: usize = 10_000;

/// The export's first line.
pub const HEADER: &str = "id,name,type,contact_name,contact_email,converted";

/// A lead an import will create: its name, type and contacts.
#[derive(Debug, Clone, PartialEq)]
pub struct NewLead {
    pub name: String,
    pub kind: String,
    pub contacts: Vec<Contact>,
}

/// A bad row of an import.
#[derive(Debug, Clone, PartialEq)]
pub struct RowError {
    pub line: usize,
    pub field: String,
    pub message: String,
}

/// Why nothing of an import was written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ImportError {
    /// The text as a whole is not an import (not UTF-8, no header, a quote
    /// never closed, too many rows).
    #[error("{0}")]
    Unreadable(String),
    /// These rows are bad (each named); the others were fine.
    #[error("{} bad rows, nothing was imported: {}", .0.len(), summary(.0))]
    Rows(Vec<RowError>),
}

fn summary(errors: &[RowError]) -> String {
    let lines: Vec<String> =
        errors.iter().take(50).map(|e| format!("line {}: {} ({})", e.line, e.message, e.field)).collect();
    lines.join("; ")
}

/// A CSV field, quoted when it must be.
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// The leads as CSV under [`HEADER`].
pub fn export(leads: &[Lead]) -> String {
    let mut out = format!("{HEADER}\n");
    for lead in leads {
        let converted = if lead.converted_to.is_some() { "yes" } else { "no" };
        let none = [Contact { name: String::new(), email: None }];
        let contacts = if lead.contacts.is_empty() { &none[..] } else { &lead.contacts[..] };
        for contact in contacts {
            out.push_str(&format!(
                "{},{},{},{},{},{converted}\n",
                lead.number,
                field(&lead.name),
                field(&lead.r#type),
                field(&contact.name),
                field(contact.email.as_deref().unwrap_or_default()),
            ));
        }
    }
    out
}

/// The rows of a CSV text: fields split on commas, `"…"` quoting with
/// `""` for a quote, each row with the line it starts on; `Err` with the
/// line where a quote is never closed.
pub fn parse(text: &str) -> Result<Vec<(usize, Vec<String>)>, usize> {
    let mut rows = Vec::new();
    let (mut row, mut cell) = (Vec::new(), String::new());
    let (mut quoted, mut line, mut row_line) = (false, 1, 1);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => {
                if c == '\n' {
                    line += 1;
                }
                cell.push(c);
            }
            (false, '"') if cell.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut cell)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut cell));
                rows.push((row_line, std::mem::take(&mut row)));
                line += 1;
                row_line = line;
            }
            (false, c) => cell.push(c),
        }
    }
    if quoted {
        return Err(row_line);
    }
    if !cell.is_empty() || !row.is_empty() {
        row.push(cell);
        rows.push((row_line, row));
    }
    Ok(rows.into_iter().filter(|(_, row)| !(row.len() == 1 && row[0].trim().is_empty())).collect())
}

/// The leads an import's text asks for, every row checked: rows of one
/// lead (the same name and type) gather its contacts.
pub fn check_import(text: &str) -> Result<Vec<NewLead>, ImportError> {
    let rows = parse(text).map_err(|line| ImportError::Unreadable(format!("line {line}: a quote is not closed")))?;
    let mut rows = rows.into_iter();
    let header: Vec<String> =
        rows.next().map(|(_, header)| header.iter().map(|h| h.trim().to_lowercase()).collect()).unwrap_or_default();
    let column = |name: &str| header.iter().position(|h| h == name);
    let (Some(name_at), Some(type_at)) = (column("name"), column("type")) else {
        return Err(ImportError::Unreadable(
            "the first line must name the columns: name,type[,contact_name,contact_email]".to_owned(),
        ));
    };
    let (contact_at, email_at) = (column("contact_name"), column("contact_email"));
    let (mut leads, mut errors) = (Vec::<NewLead>::new(), Vec::new());
    for (line, row) in rows {
        let cell =
            |at: Option<usize>| at.and_then(|at| row.get(at)).map(|value| value.trim()).filter(|v| !v.is_empty());
        let mut bad = |field: &str, message: String| errors.push(RowError { line, field: field.to_owned(), message });
        let mut required = |name: &str, at: usize| match cell(Some(at)).map(parse_lead_text) {
            Some(Ok(value)) => Some(value),
            Some(Err(why)) => {
                bad(name, format!("{name} {why}"));
                None
            }
            None => {
                bad(name, format!("{name} is required"));
                None
            }
        };
        let name = required("name", name_at);
        let kind = required("type", type_at);
        let mut contacts = Vec::new();
        match (cell(contact_at), cell(email_at)) {
            (Some(contact_name), email) => {
                let name = parse_lead_text(contact_name).map_err(|why| ("contact_name", format!("name {why}")));
                let email =
                    email.map(|raw| parse_email(raw).map_err(|e| ("contact_email", format!("email {e}")))).transpose();
                match (name, email) {
                    (Ok(name), Ok(email)) => contacts.push(Contact { name, email }),
                    (Err((field, message)), _) | (_, Err((field, message))) => bad(field, message),
                }
            }
            (None, Some(_)) => bad("contact_name", "a contact_email needs a contact_name".to_owned()),
            (None, None) => {}
        }
        if let (Some(name), Some(kind)) = (name, kind) {
            match leads.iter_mut().find(|lead| lead.name == name && lead.kind == kind) {
                Some(lead) => lead.contacts.extend(contacts),
                None => leads.push(NewLead { name, kind, contacts }),
            }
        }
        if leads.len() + errors.len() > MAX_IMPORT_ROWS {
            return Err(ImportError::Unreadable(format!("an import takes at most {MAX_IMPORT_ROWS} rows")));
        }
    }
    if errors.is_empty() {
        Ok(leads)
    } else {
        Err(ImportError::Rows(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_import_names_each_bad_row_by_its_line() {
        let text = "name,type,contact_name,contact_email\nUni A,university,Ana,ana@example.com\n,company,,\n\"Gov, B\",government,Bo,not-an-email\nUni A,university,Cy,\n";
        let Err(ImportError::Rows(errors)) = check_import(text) else { panic!("refused") };
        let lines: Vec<(usize, &str)> = errors.iter().map(|e| (e.line, e.field.as_str())).collect();
        assert_eq!(lines, [(3, "name"), (4, "contact_email")]);
        let fine = "name,type,contact_name\nUni A,university,Ana\nUni A,university,Cy\n\"Gov, B\",government,\n";
        let leads = check_import(fine).unwrap();
        assert_eq!(leads.len(), 2);
        assert_eq!(leads[0].contacts.len(), 2);
        assert_eq!(leads[1].name, "Gov, B");
        assert!(matches!(check_import("nope\n"), Err(ImportError::Unreadable(_))));
        assert!(matches!(check_import("name,type\n\"open,x\n"), Err(ImportError::Unreadable(_))));
    }
}
