"""Stage 7: budgets, the Pareto front, the tie-aware pick, report.md, pareto.png, device re-picks, the bundle."""
