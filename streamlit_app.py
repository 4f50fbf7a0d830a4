"""The live election dashboard: `streamlit run streamlit_app.py`. See realtime_voting/dashboard.py."""

from realtime_voting.dashboard import render

render()
