//! The `${{ }}` expression language: lexer, parser, evaluator and functions.
