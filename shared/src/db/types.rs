//! Column types that read the same from MySQL and SQLite through sqlx's `Any` driver.
//!
//! `Any` decodes a value by the kind the backend reports, and the two backends report some
//! columns differently: MySQL sends `TEXT` columns as blobs and has no boolean type, SQLite
//! stores booleans as integers. These wrappers accept every form the schema produces, so a row
//! type is written once. Use them through `#[sqlx(try_from = "...")]` on a plain field.

use sqlx::{
    any::{AnyTypeInfo, AnyTypeInfoKind, AnyValueRef},
    error::BoxDynError,
    Any, Decode, Type, ValueRef,
};

/// A boolean column (MySQL `SMALLINT`/`TINYINT` 0 or 1, SQLite `INTEGER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flag(pub bool);

impl From<Flag> for bool {
    fn from(flag: Flag) -> bool {
        flag.0
    }
}

impl Type<Any> for Flag {
    fn type_info() -> AnyTypeInfo {
        <i64 as Type<Any>>::type_info()
    }

    fn compatible(ty: &AnyTypeInfo) -> bool {
        ty.kind().is_integer() || ty.kind() == AnyTypeInfoKind::Bool
    }
}

impl<'r> Decode<'r, Any> for Flag {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        if value.type_info().kind() == AnyTypeInfoKind::Bool {
            return Ok(Self(<bool as Decode<Any>>::decode(value)?));
        }
        Ok(Self(<i64 as Decode<Any>>::decode(value)? != 0))
    }
}

/// A text column of any length (MySQL sends `TEXT`/`LONGTEXT` as a blob of UTF-8).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Text(pub String);

impl From<Text> for String {
    fn from(text: Text) -> String {
        text.0
    }
}

impl Type<Any> for Text {
    fn type_info() -> AnyTypeInfo {
        <String as Type<Any>>::type_info()
    }

    fn compatible(ty: &AnyTypeInfo) -> bool {
        matches!(ty.kind(), AnyTypeInfoKind::Text | AnyTypeInfoKind::Blob)
    }
}

impl<'r> Decode<'r, Any> for Text {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        if value.type_info().kind() == AnyTypeInfoKind::Blob {
            let bytes = <Vec<u8> as Decode<Any>>::decode(value)?;
            return Ok(Self(String::from_utf8(bytes)?));
        }
        Ok(Self(<String as Decode<Any>>::decode(value)?))
    }
}

/// A nullable text column of any length.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OptText(pub Option<String>);

impl From<OptText> for Option<String> {
    fn from(text: OptText) -> Option<String> {
        text.0
    }
}

impl Type<Any> for OptText {
    fn type_info() -> AnyTypeInfo {
        <Text as Type<Any>>::type_info()
    }

    fn compatible(ty: &AnyTypeInfo) -> bool {
        <Text as Type<Any>>::compatible(ty) || ty.kind() == AnyTypeInfoKind::Null
    }
}

impl<'r> Decode<'r, Any> for OptText {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        if value.is_null() {
            return Ok(Self(None));
        }
        Ok(Self(Some(<Text as Decode<Any>>::decode(value)?.0)))
    }
}

/// A nullable binary column read as `HEX(column)`. MySQL reports `BINARY(n)` columns as text,
/// which the `Any` driver cannot carry for bytes that are not UTF-8, so binary values are
/// selected in hex (the same `HEX()` in both dialects) and decoded here.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OptHex(pub Option<Vec<u8>>);

impl From<OptHex> for Option<Vec<u8>> {
    fn from(hex: OptHex) -> Option<Vec<u8>> {
        hex.0
    }
}

impl Type<Any> for OptHex {
    fn type_info() -> AnyTypeInfo {
        <Text as Type<Any>>::type_info()
    }

    fn compatible(ty: &AnyTypeInfo) -> bool {
        <OptText as Type<Any>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Any> for OptHex {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        match <OptText as Decode<Any>>::decode(value)?.0 {
            None => Ok(Self(None)),
            Some(text) => Ok(Self(Some(hex::decode(text)?))),
        }
    }
}
