"""Figure builders: pure functions from result objects/arrays to Plotly figures (no Streamlit)."""
