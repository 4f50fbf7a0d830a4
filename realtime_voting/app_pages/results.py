"""The results page of streamlit_app.py (its st.Page runs this file). See realtime_voting/dashboard.py."""

from realtime_voting.dashboard import render

render()
