"""The results page of streamlit_app.py (its st.Page runs this file). See realtime_voting/web/dashboard.py."""

from realtime_voting.web.dashboard import render

render()
