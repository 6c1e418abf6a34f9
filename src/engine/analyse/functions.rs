//! Which functions a statement may call. Built-in `pg_catalog` functions are fine except those
//! that run SQL from a string or read data, files or other sessions by name; functions outside
//! `pg_catalog` are opaque (their bodies can read any column) and need
//! `Grant::ProceduralCode`; names nobody knows are refused (fail closed).

use crate::catalog::{Catalog, QualifiedName};

/// Built-ins that execute SQL held in a string, read tables, files or large objects by name,
/// or expose other sessions' statements. Matched on the unqualified, folded name.
const DENIED_BUILTINS: &[&str] = &[
    // Sizes of relations and databases move with the size of every value stored, protected
    // ones included (found by the non-interference oracle).
    "pg_relation_size",
    "pg_total_relation_size",
    "pg_table_size",
    "pg_indexes_size",
    "pg_database_size",
    "pg_tablespace_size",
    "pg_relation_filenode",
    "pg_relation_filepath",
    "query_to_xml",
    "query_to_xmlschema",
    "query_to_xml_and_xmlschema",
    "cursor_to_xml",
    "cursor_to_xmlschema",
    "table_to_xml",
    "table_to_xmlschema",
    "table_to_xml_and_xmlschema",
    "schema_to_xml",
    "schema_to_xmlschema",
    "schema_to_xml_and_xmlschema",
    "database_to_xml",
    "database_to_xmlschema",
    "database_to_xml_and_xmlschema",
    "ts_stat",
    "ts_rewrite",
    "pg_read_file",
    "pg_read_binary_file",
    "pg_stat_file",
    "pg_ls_dir",
    "pg_file_write",
    "pg_file_rename",
    "pg_file_unlink",
    "lo_import",
    "lo_export",
    "lo_get",
    "lo_open",
    "loread",
    "lo_read",
    "lo_put",
    "lo_from_bytea",
    "lo_create",
    "lo_creat",
    "lowrite",
    "pg_stat_get_activity",
    "pg_stat_get_backend_activity",
    "pg_stat_get_backend_client_addr",
    "pg_stat_get_backend_userid",
    "pg_stat_statements",
    "pg_get_backend_memory_contexts",
    "pg_current_logfile",
    "pg_prepared_statement",
    "pg_cursor",
    "pg_show_all_file_settings",
    "pg_hba_file_rules",
    "pg_stat_get_wal_senders",
    "pg_logical_slot_get_changes",
    "pg_logical_slot_peek_changes",
    "pg_logical_slot_get_binary_changes",
    "pg_logical_slot_peek_binary_changes",
    "pg_replication_slot_advance",
    "pg_import_system_collations",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_promote",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_stat_reset",
    "pg_stat_reset_shared",
    "pg_stat_reset_single_table_counters",
    "pg_stat_reset_single_function_counters",
    "pg_stat_reset_slru",
    "pg_stat_reset_replication_slot",
    "xmlexists_sql",
];

/// Name prefixes of denied built-ins (families of file, dblink and per-backend functions).
const DENIED_PREFIXES: &[&str] = &[
    "dblink",
    "pg_ls_",
    "pg_read_",
    "lo_",
    "pg_stat_get_backend_",
    "pg_logical_",
    "pg_replication_origin_",
    "pg_create_",
    "pg_drop_replication",
];

/// Built-ins known to be harmless, used when the catalog snapshot does not list functions.
const ALLOWED_BUILTINS: &[&str] = &[
    // aggregates
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "every",
    "bit_and",
    "bit_or",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "jsonb_object_agg",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
    "corr",
    "covar_pop",
    "covar_samp",
    "percentile_cont",
    "percentile_disc",
    "mode",
    "regr_count",
    "regr_avgx",
    "regr_avgy",
    "regr_slope",
    "regr_intercept",
    "regr_r2",
    "grouping",
    // window functions
    "row_number",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "ntile",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "nth_value",
    // conditional and comparison
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "num_nulls",
    "num_nonnulls",
    // strings
    "lower",
    "upper",
    "initcap",
    "length",
    "char_length",
    "character_length",
    "octet_length",
    "bit_length",
    "substr",
    "substring",
    "left",
    "right",
    "lpad",
    "rpad",
    "ltrim",
    "rtrim",
    "btrim",
    "trim",
    "replace",
    "reverse",
    "repeat",
    "concat",
    "concat_ws",
    "format",
    "position",
    "strpos",
    "split_part",
    "starts_with",
    "md5",
    "sha224",
    "sha256",
    "sha384",
    "sha512",
    "encode",
    "decode",
    "quote_ident",
    "quote_literal",
    "quote_nullable",
    "ascii",
    "chr",
    "translate",
    "to_hex",
    "regexp_replace",
    "regexp_match",
    "regexp_matches",
    "regexp_split_to_array",
    "regexp_split_to_table",
    "regexp_like",
    "regexp_count",
    "regexp_instr",
    "regexp_substr",
    "string_to_array",
    "string_to_table",
    "array_to_string",
    "overlay",
    "to_char",
    "to_number",
    "to_date",
    "to_timestamp",
    "unaccent",
    "normalize",
    // numbers
    "abs",
    "ceil",
    "ceiling",
    "floor",
    "round",
    "trunc",
    "mod",
    "power",
    "pow",
    "sqrt",
    "cbrt",
    "exp",
    "ln",
    "log",
    "log10",
    "sign",
    "div",
    "pi",
    "random",
    "setseed",
    "width_bucket",
    "gcd",
    "lcm",
    "factorial",
    "degrees",
    "radians",
    "sin",
    "cos",
    "tan",
    "asin",
    "acos",
    "atan",
    "atan2",
    "scale",
    "min_scale",
    "trim_scale",
    // dates and times
    "now",
    "current_timestamp",
    "current_date",
    "current_time",
    "localtime",
    "localtimestamp",
    "clock_timestamp",
    "statement_timestamp",
    "transaction_timestamp",
    "timeofday",
    "date_trunc",
    "date_part",
    "date_bin",
    "extract",
    "age",
    "make_date",
    "make_time",
    "make_timestamp",
    "make_timestamptz",
    "make_interval",
    "justify_days",
    "justify_hours",
    "justify_interval",
    "isfinite",
    "to_timestamp",
    // session information (own session only)
    "current_user",
    "session_user",
    "current_role",
    "user",
    "current_catalog",
    "current_schema",
    "current_schemas",
    "current_database",
    "version",
    "pg_backend_pid",
    "current_setting",
    "inet_client_addr",
    "inet_client_port",
    "inet_server_addr",
    "inet_server_port",
    "txid_current",
    "pg_current_xact_id",
    "pg_postmaster_start_time",
    "pg_conf_load_time",
    "pg_typeof",
    "pg_sleep",
    "pg_sleep_for",
    "pg_sleep_until",
    // arrays
    "array_length",
    "array_lower",
    "array_upper",
    "array_ndims",
    "array_dims",
    "array_position",
    "array_positions",
    "array_remove",
    "array_replace",
    "array_append",
    "array_prepend",
    "array_cat",
    "array_fill",
    "cardinality",
    "unnest",
    "generate_series",
    "generate_subscripts",
    "array",
    "row",
    // json
    "to_json",
    "to_jsonb",
    "row_to_json",
    "array_to_json",
    "json_build_object",
    "jsonb_build_object",
    "json_build_array",
    "jsonb_build_array",
    "json_object",
    "jsonb_object",
    "json_array_length",
    "jsonb_array_length",
    "json_each",
    "jsonb_each",
    "json_each_text",
    "jsonb_each_text",
    "json_extract_path",
    "jsonb_extract_path",
    "json_extract_path_text",
    "jsonb_extract_path_text",
    "json_object_keys",
    "jsonb_object_keys",
    "json_array_elements",
    "jsonb_array_elements",
    "json_array_elements_text",
    "jsonb_array_elements_text",
    "json_typeof",
    "jsonb_typeof",
    "jsonb_set",
    "jsonb_insert",
    "jsonb_strip_nulls",
    "json_strip_nulls",
    "jsonb_pretty",
    "jsonb_path_query",
    "jsonb_path_exists",
    "jsonb_path_match",
    "jsonb_path_query_array",
    "jsonb_path_query_first",
    "json_populate_record",
    "jsonb_populate_record",
    "json_to_record",
    "jsonb_to_record",
    "json_to_recordset",
    "jsonb_to_recordset",
    // network, uuid, misc
    "host",
    "hostmask",
    "masklen",
    "netmask",
    "network",
    "family",
    "abbrev",
    "broadcast",
    "inet_same_family",
    "inet_merge",
    "gen_random_uuid",
    "uuid_generate_v4",
    "to_tsvector",
    "to_tsquery",
    "plainto_tsquery",
    "phraseto_tsquery",
    "websearch_to_tsquery",
    "ts_rank",
    "ts_rank_cd",
    "ts_headline",
    "setweight",
    "xmlparse",
    "xmlserialize",
    "xmlelement",
    "xmlforest",
    "xmlconcat",
    "xmlagg",
    "xpath",
    "xpath_exists",
    "bool",
    "int4",
    "int8",
    "text",
    "numeric",
    "float8",
    "has_table_privilege",
    "has_column_privilege",
    "has_schema_privilege",
    "pg_has_role",
    "obj_description",
    "col_description",
    "format_type",
    "pg_get_viewdef",
    "pg_relation_size",
    "pg_total_relation_size",
    "pg_size_pretty",
    "pg_table_size",
    "pg_indexes_size",
    "pg_database_size",
    "pg_column_size",
    "pg_advisory_lock",
    "pg_advisory_unlock",
    "pg_try_advisory_lock",
    "pg_advisory_xact_lock",
    "pg_try_advisory_xact_lock",
    "pg_advisory_unlock_all",
    "nextval",
    "currval",
    "lastval",
    "setval",
    "set_config",
    "exists",
];

/// What a function call needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FunctionClass {
    /// A harmless built-in.
    Builtin,
    /// A built-in that runs SQL or reads data / files / other sessions by name.
    DeniedBuiltin,
    /// A function outside `pg_catalog`: its body is opaque.
    UserDefined(QualifiedName),
    /// Not known to the catalog or the built-in list.
    Unknown,
}

pub fn is_denied_builtin(name: &str) -> bool {
    DENIED_BUILTINS.contains(&name) || DENIED_PREFIXES.iter().any(|p| name.starts_with(p))
}

fn catalog_lists_builtins(catalog: &Catalog) -> bool {
    catalog.functions.keys().any(|k| k.schema == "pg_catalog")
}

/// SQL constructs that look like function calls but are grammar, not `pg_proc` entries.
const SYNTAX_FUNCTIONS: &[&str] = &[
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "current_date",
    "current_time",
    "current_timestamp",
    "localtime",
    "localtimestamp",
    "current_user",
    "current_role",
    "session_user",
    "user",
    "current_catalog",
    "current_schema",
    "system_user",
    "grouping",
    "xmlelement",
    "xmlforest",
    "xmlconcat",
    "xmlparse",
    "xmlpi",
    "xmlroot",
    "xmlserialize",
    "xmlexists",
    "extract",
    "overlay",
    "position",
    "substring",
    "trim",
    "normalize",
    "treat",
];

fn builtin_exists(catalog: &Catalog, name: &str) -> bool {
    if SYNTAX_FUNCTIONS.contains(&name) {
        return true;
    }
    if catalog_lists_builtins(catalog) {
        catalog
            .functions
            .contains_key(&QualifiedName::new("pg_catalog", name))
    } else {
        ALLOWED_BUILTINS.contains(&name)
    }
}

/// Classify a call of `schema.name` (schema `None`: unqualified, resolved through the search
/// path). A name defined by the user in any schema of the search path is treated as the
/// user's function even when a built-in of that name exists: Postgres picks among overloads
/// across the whole path by argument types, so the built-in might not be the one called.
pub fn classify(catalog: &Catalog, schema: Option<&str>, name: &str) -> FunctionClass {
    let builtin = |n: &str| {
        if is_denied_builtin(n) {
            FunctionClass::DeniedBuiltin
        } else if builtin_exists(catalog, n) {
            FunctionClass::Builtin
        } else {
            FunctionClass::Unknown
        }
    };
    match schema {
        Some("pg_catalog") => builtin(name),
        Some(s) => {
            let q = QualifiedName::new(s, name);
            if catalog.functions.contains_key(&q) {
                FunctionClass::UserDefined(q)
            } else {
                FunctionClass::Unknown
            }
        }
        None => {
            let user = catalog
                .search_path
                .iter()
                .filter(|s| s.as_str() != "pg_catalog")
                .map(|s| QualifiedName::new(s.as_str(), name))
                .find(|q| catalog.functions.contains_key(q));
            match user {
                Some(q) => FunctionClass::UserDefined(q),
                None => builtin(name),
            }
        }
    }
}

/// Table functions whose output columns are known: (name, columns). A single unnamed column
/// is named after the alias or the function, as in Postgres.
pub fn table_function_columns(name: &str, nargs: usize) -> Option<Vec<&'static str>> {
    match name {
        "generate_series"
        | "generate_subscripts"
        | "regexp_split_to_table"
        | "string_to_table"
        | "json_object_keys"
        | "jsonb_object_keys"
        | "regexp_matches" => Some(vec![""]),
        "unnest" => Some(vec![""; nargs.max(1)]),
        "json_array_elements"
        | "jsonb_array_elements"
        | "json_array_elements_text"
        | "jsonb_array_elements_text" => Some(vec!["value"]),
        "json_each" | "jsonb_each" | "json_each_text" | "jsonb_each_text" => {
            Some(vec!["key", "value"])
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Function;

    #[test]
    fn user_functions_shadow_builtins_and_unknown_names_fail() {
        let mut cat = Catalog {
            search_path: vec!["public".into()],
            ..Default::default()
        };
        assert_eq!(classify(&cat, None, "lower"), FunctionClass::Builtin);
        assert_eq!(classify(&cat, None, "no_such_fn"), FunctionClass::Unknown);
        // Loaded mode: only what pg_proc lists, plus grammar constructs.
        let mut loaded = cat.clone();
        let lower = QualifiedName::new("pg_catalog", "lower");
        loaded.functions.insert(
            lower.clone(),
            Function {
                name: lower,
                kind: 'f',
                language: "internal".into(),
                security_definer: false,
            },
        );
        assert_eq!(classify(&loaded, None, "lower"), FunctionClass::Builtin);
        assert_eq!(classify(&loaded, None, "coalesce"), FunctionClass::Builtin);
        assert_eq!(classify(&loaded, None, "upper"), FunctionClass::Unknown);
        assert_eq!(
            classify(&cat, None, "query_to_xml"),
            FunctionClass::DeniedBuiltin
        );
        assert_eq!(
            classify(&cat, Some("pg_catalog"), "dblink_exec"),
            FunctionClass::DeniedBuiltin
        );
        let f = QualifiedName::new("public", "lower");
        cat.functions.insert(
            f.clone(),
            Function {
                name: f.clone(),
                kind: 'f',
                language: "sql".into(),
                security_definer: false,
            },
        );
        assert_eq!(classify(&cat, None, "lower"), FunctionClass::UserDefined(f));
        assert_eq!(
            classify(&cat, Some("pg_catalog"), "lower"),
            FunctionClass::Builtin
        );
    }
}
