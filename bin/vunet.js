#!/usr/bin/env node
// Launcher for the compiled CLI (npm ci builds dist/ with `tsc -b` in its prepare step).
import '../dist/src/cli.js';
