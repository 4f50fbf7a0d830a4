"""The "Cast your vote" page of streamlit_app.py (its st.Page runs this file). See realtime_voting/ballot_page.py."""

from realtime_voting.ballot_page import render

render()
