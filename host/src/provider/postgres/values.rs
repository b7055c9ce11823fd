//! renga:sql's five kinds of value, to and from PostgreSQL's binary forms:
//! a parameter is bound to the type the server inferred for it, a column
//! comes back as the closest kind.

use bytes::BytesMut;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

use crate::provider::sql::Value;

/// A renga:sql value bound to the type the server inferred.
#[derive(Debug)]
pub(super) struct Param<'a>(pub(super) &'a Value);

fn wrong(value: &Value, ty: &Type) -> Box<dyn std::error::Error + Sync + Send> {
    let kind = match value {
        Value::Null => "null",
        Value::Integer(_) => "an integer",
        Value::Real(_) => "a real",
        Value::Text(_) => "a text",
        Value::Blob(_) => "a blob",
    };
    format!("{kind} cannot be bound to a parameter of type {ty}; cast it in the statement").into()
}

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match (self.0, ty) {
            (Value::Null, _) => Ok(IsNull::Yes),
            (Value::Integer(i), &Type::INT8) => i.to_sql(ty, out),
            (Value::Integer(i), &Type::INT4) => i32::try_from(*i)?.to_sql(ty, out),
            (Value::Integer(i), &Type::INT2) => i16::try_from(*i)?.to_sql(ty, out),
            (Value::Integer(i), &Type::OID) => u32::try_from(*i)?.to_sql(ty, out),
            (Value::Integer(i), &Type::FLOAT8) => (*i as f64).to_sql(ty, out),
            (Value::Integer(i), &Type::FLOAT4) => (*i as f32).to_sql(ty, out),
            (Value::Integer(i), &Type::BOOL) => (*i != 0).to_sql(ty, out),
            (Value::Integer(i), &Type::NUMERIC) => numeric_to_sql(&i.to_string(), out),
            (Value::Real(r), &Type::FLOAT8) => r.to_sql(ty, out),
            (Value::Real(r), &Type::FLOAT4) => (*r as f32).to_sql(ty, out),
            (Value::Real(r), &Type::NUMERIC) => numeric_to_sql(&r.to_string(), out),
            (Value::Blob(b), &Type::BYTEA) => b.to_sql(ty, out),
            (Value::Text(t), &Type::JSONB) => {
                out.extend_from_slice(&[1]);
                out.extend_from_slice(t.as_bytes());
                Ok(IsNull::No)
            }
            (Value::Text(t), &Type::JSON) => {
                out.extend_from_slice(t.as_bytes());
                Ok(IsNull::No)
            }
            (Value::Text(t), &Type::UUID) => {
                let hex: String = t.chars().filter(|c| *c != '-').collect();
                let bytes = hex::decode(&hex)?;
                if bytes.len() != 16 {
                    return Err(format!("{t:?} is not a UUID").into());
                }
                out.extend_from_slice(&bytes);
                Ok(IsNull::No)
            }
            (Value::Text(t), &Type::INT8 | &Type::INT4 | &Type::INT2) => {
                Param(&Value::Integer(t.trim().parse()?)).to_sql(ty, out)
            }
            (Value::Text(t), &Type::FLOAT8 | &Type::FLOAT4) => {
                Param(&Value::Real(t.trim().parse()?)).to_sql(ty, out)
            }
            (Value::Text(t), &Type::NUMERIC) => numeric_to_sql(t.trim(), out),
            (Value::Text(t), &Type::BOOL) => {
                let value = match t.trim().to_ascii_lowercase().as_str() {
                    "t" | "true" | "1" | "yes" | "on" => true,
                    "f" | "false" | "0" | "no" | "off" => false,
                    _ => return Err(format!("{t:?} is not a boolean").into()),
                };
                value.to_sql(ty, out)
            }
            (Value::Text(t), &Type::DATE) => {
                let date = time::Date::parse(
                    t.trim(),
                    time::macros::format_description!("[year]-[month]-[day]"),
                )?;
                let days = (date - EPOCH.date()).whole_days();
                i32::try_from(days)?.to_sql(&Type::INT4, out)
            }
            (Value::Text(t), &Type::TIMESTAMPTZ | &Type::TIMESTAMP) => {
                let at = time::OffsetDateTime::parse(
                    t.trim(),
                    &time::format_description::well_known::Rfc3339,
                )?;
                let micros = (at - EPOCH).whole_microseconds();
                i64::try_from(micros)?.to_sql(&Type::INT8, out)
            }
            (Value::Text(t), _) if <&str as ToSql>::accepts(ty) => t.as_str().to_sql(ty, out),
            (value, ty) => Err(wrong(value, ty)),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// PostgreSQL's epoch for dates and times.
const EPOCH: time::OffsetDateTime = time::macros::datetime!(2000-01-01 0:00 UTC);

/// A decimal in PostgreSQL's binary numeric form.
fn numeric_to_sql(
    text: &str,
    out: &mut BytesMut,
) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return Err(format!("{text:?} is not a decimal number").into());
    }
    let whole = whole.trim_start_matches('0');
    // Groups of four digits, aligned on the decimal point.
    let pad_left = (4 - whole.len() % 4) % 4;
    let whole_padded = format!("{}{whole}", "0".repeat(pad_left));
    let pad_right = (4 - fraction.len() % 4) % 4;
    let fraction_padded = format!("{fraction}{}", "0".repeat(pad_right));
    let mut groups: Vec<i16> = Vec::new();
    for chunk in whole_padded.as_bytes().chunks(4) {
        groups.push(std::str::from_utf8(chunk)?.parse()?);
    }
    let whole_groups = groups.len() as i16;
    for chunk in fraction_padded.as_bytes().chunks(4) {
        groups.push(std::str::from_utf8(chunk)?.parse()?);
    }
    let mut weight = whole_groups - 1;
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    out.extend_from_slice(&(groups.len() as i16).to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    let sign: u16 = if negative && !groups.is_empty() {
        0x4000
    } else {
        0
    };
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&(fraction.len() as u16).to_be_bytes());
    for group in groups {
        out.extend_from_slice(&group.to_be_bytes());
    }
    Ok(IsNull::No)
}

/// PostgreSQL's binary numeric as decimal text.
fn numeric_text(raw: &[u8]) -> Option<String> {
    let word =
        |i: usize| -> Option<i16> { Some(i16::from_be_bytes(raw.get(i..i + 2)?.try_into().ok()?)) };
    let count = word(0)? as usize;
    let weight = word(2)? as i32;
    let sign = word(4)? as u16;
    let scale = word(6)? as usize;
    if sign == 0xC000 {
        return Some("NaN".to_string());
    }
    let groups: Vec<i16> = (0..count).map(|i| word(8 + 2 * i)).collect::<Option<_>>()?;
    let mut whole = String::new();
    for i in 0..=weight.max(-1) {
        let group = groups.get(i as usize).copied().unwrap_or(0);
        if whole.is_empty() {
            if group != 0 {
                whole = group.to_string();
            }
        } else {
            whole.push_str(&format!("{group:04}"));
        }
    }
    if whole.is_empty() {
        whole.push('0');
    }
    let mut fraction = String::new();
    let mut index = weight + 1;
    while fraction.len() < scale {
        let group = if index < 0 {
            0
        } else {
            groups.get(index as usize).copied().unwrap_or(0)
        };
        fraction.push_str(&format!("{group:04}"));
        index += 1;
    }
    fraction.truncate(scale);
    let mut text = String::new();
    if sign == 0x4000 {
        text.push('-');
    }
    text.push_str(&whole);
    if scale > 0 {
        text.push('.');
        text.push_str(&fraction);
    }
    Some(text)
}

/// A column in renga:sql's kinds.
pub(super) struct Column(pub(super) Value);

impl<'a> FromSql<'a> for Column {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let value = match *ty {
            Type::BOOL => Value::Integer(i64::from(bool::from_sql(ty, raw)?)),
            Type::INT2 => Value::Integer(i64::from(i16::from_sql(ty, raw)?)),
            Type::INT4 => Value::Integer(i64::from(i32::from_sql(ty, raw)?)),
            Type::INT8 => Value::Integer(i64::from_sql(ty, raw)?),
            Type::OID => Value::Integer(i64::from(u32::from_sql(ty, raw)?)),
            Type::FLOAT4 => Value::Real(f64::from(f32::from_sql(ty, raw)?)),
            Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw)?),
            Type::BYTEA => Value::Blob(raw.to_vec()),
            Type::JSONB => Value::Text(String::from_utf8_lossy(raw.get(1..).unwrap_or(&[])).into()),
            Type::JSON => Value::Text(String::from_utf8_lossy(raw).into()),
            Type::UUID if raw.len() == 16 => {
                let h = hex::encode(raw);
                Value::Text(format!(
                    "{}-{}-{}-{}-{}",
                    &h[0..8],
                    &h[8..12],
                    &h[12..16],
                    &h[16..20],
                    &h[20..32]
                ))
            }
            Type::NUMERIC => Value::Text(numeric_text(raw).ok_or("a malformed numeric")?),
            Type::DATE => {
                let days = i32::from_sql(&Type::INT4, raw)?;
                let date = EPOCH.date() + time::Duration::days(i64::from(days));
                Value::Text(date.to_string())
            }
            Type::TIMESTAMP | Type::TIMESTAMPTZ => {
                let micros = i64::from_sql(&Type::INT8, raw)?;
                let at = EPOCH + time::Duration::microseconds(micros);
                Value::Text(at.format(&time::format_description::well_known::Rfc3339)?)
            }
            _ if <String as FromSql>::accepts(ty) => Value::Text(String::from_sql(ty, raw)?),
            _ => Value::Blob(raw.to_vec()),
        };
        Ok(Column(value))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Column(Value::Null))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

pub(super) fn value_bytes(value: &Value) -> usize {
    match value {
        Value::Text(t) => t.len(),
        Value::Blob(b) => b.len(),
        _ => 8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numerics_round_trip_through_the_binary_form() {
        for text in [
            "0",
            "1",
            "-1",
            "12345.678",
            "0.0001",
            "10000",
            "-99999999.5",
            "3.14159",
        ] {
            let mut out = BytesMut::new();
            numeric_to_sql(text, &mut out).unwrap();
            let back = numeric_text(&out).unwrap();
            let want: f64 = text.parse().unwrap();
            assert_eq!(back.parse::<f64>().unwrap(), want, "{text} → {back}");
        }
        assert!(numeric_to_sql("1e5", &mut BytesMut::new()).is_err());
    }
}
